"""Faults a member rejoins from, for tests and bench.rejoin: members in network namespaces whose
link can be cut (packets vanish, nothing is refused), a writer that remembers what was
acknowledged, and the time until a member serves a linearizable Range again.

Namespaces need root. Every namespace and link is removed by name by ``Netns.remove``.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.cluster_procs import ClusterMember, ProcessCluster

SERVE_DEADLINE = 60.0  # a member not serving by then counts as this long
PROBE_EVERY = 0.02
CLIENT_PORT = 2379
PEER_PORT = 2380
WRITER_PREFIX = b"rejoin/"


def serves(endpoint: str, timeout: float = 0.5) -> bool:
    """One linearizable Range on a fresh channel (no client back-off carried over)."""
    try:
        with grpc.insecure_channel(endpoint) as channel:
            rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"rejoin"), timeout=timeout)
        return True
    except grpc.RpcError:
        return False


def time_to_serve(endpoint: str, since: float, deadline: float = SERVE_DEADLINE) -> float:
    """Seconds from ``since`` (monotonic) until ``endpoint`` serves, ``deadline`` at most."""
    while time.monotonic() - since < deadline:
        if serves(endpoint):
            return time.monotonic() - since
        time.sleep(PROBE_EVERY)
    return deadline


# -- network namespaces -----------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


class Netns:
    """A bridge in this namespace (with an address, so this process reaches the members) and one
    namespace per member, each with a veth pair to the bridge."""

    def __init__(self, tag: str, size: int, subnet: str) -> None:
        self.bridge = f"rjb{tag}"
        self.namespaces = [f"rj{tag}m{i}" for i in range(size)]
        self.host_links = [f"rjh{tag}m{i}" for i in range(size)]
        self.addresses = [f"{subnet}.{i + 1}" for i in range(size)]
        self.subnet = subnet

    def create(self) -> None:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for ns, link, addr in zip(
                self.namespaces, self.host_links, self.addresses, strict=True
            ):
                _ip("netns", "add", ns)
                _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", link, "master", self.bridge)
                _ip("link", "set", link, "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise

    def cut(self, index: int) -> None:
        _ip("link", "set", self.host_links[index], "down")

    def heal(self, index: int) -> None:
        _ip("link", "set", self.host_links[index], "up")

    def remove(self) -> None:
        for ns, link in zip(self.namespaces, self.host_links, strict=True):
            _ip("link", "del", link, check=False)
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)


@dataclass
class NetnsMember(ClusterMember):
    """A member whose process runs in its own network namespace, on its own address."""

    namespace: str = ""
    address: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{self.peer_port}"

    def args(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *super().args()]  # exec: same PID


def netns_cluster(tmp: Path, binary: list[str], net: Netns, flags: list[str]) -> ProcessCluster:
    tmp.mkdir(parents=True, exist_ok=True)
    names = [f"m{i}" for i in range(len(net.namespaces))]
    initial = ",".join(
        f"{n}=http://{a}:{PEER_PORT}" for n, a in zip(names, net.addresses, strict=True)
    )
    members: list[ClusterMember] = [
        NetnsMember(
            name=name,
            data_dir=tmp / f"{name}.data",
            client_port=CLIENT_PORT,
            peer_port=PEER_PORT,
            binary=binary,
            extra_args=list(flags),
            initial_cluster=initial,
            namespace=ns,
            address=addr,
        )
        for name, ns, addr in zip(names, net.namespaces, net.addresses, strict=True)
    ]
    return ProcessCluster(members)


# -- load and faults --------------------------------------------------------------------------


class Writer(threading.Thread):
    """Puts a new key every 50 ms through the members it is given; remembers what was acked."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True, name="rejoin-writer")
        self.endpoints = endpoints
        self.stop_event = threading.Event()
        self.acked: list[bytes] = []
        self.count = 0

    def run(self) -> None:
        channels = [grpc.insecure_channel(e) for e in self.endpoints]
        try:
            while not self.stop_event.wait(0.05):
                self.count += 1
                key = WRITER_PREFIX + f"{time.time_ns()}/{self.count}".encode()
                stub = rpc_pb2_grpc.KVStub(channels[self.count % len(channels)])
                with contextlib.suppress(grpc.RpcError):
                    stub.Put(rpc_pb2.PutRequest(key=key, value=b"v"), timeout=1.0)
                    self.acked.append(key)
        finally:
            for channel in channels:
                channel.close()


@contextlib.contextmanager
def writing(endpoints: list[str]) -> Iterator[Writer]:
    writer = Writer(endpoints)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop_event.set()
        writer.join(timeout=5)


def netns_usable() -> bool:
    """Root with the ``ip`` tool: namespaces, veth pairs and bridges can be made."""
    import os
    import shutil

    return os.geteuid() == 0 and shutil.which("ip") is not None


def missing_keys(endpoint: str, keys: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """The ``keys`` (the writer's acknowledged puts) a linearizable read on ``endpoint`` lacks.
    Only the keys acknowledged before the read starts are checked: a writer may still be
    appending to ``keys``, and a put acknowledged after the read began may rightly be absent."""
    keys = list(keys)
    with grpc.insecure_channel(endpoint) as channel:
        resp = rpc_pb2_grpc.KVStub(channel).Range(
            rpc_pb2.RangeRequest(
                key=WRITER_PREFIX, range_end=WRITER_PREFIX[:-1] + b"0", keys_only=True
            ),
            timeout=timeout,
        )
    present = {kv.key for kv in resp.kvs}
    return [k for k in keys if k not in present]
