"""Front-end processes (--frontend-processes N): a member serves its clients from N processes.

What a user sees does not change (the rest of the suite runs with N=1 and N=2 through
ETCD_FRONTEND_PROCESSES); these tests check what is particular to the process model: the
front-ends exist, share the port, are restarted when they die, die with the core, stop with it,
and do not let a second member take a port that is in use.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import (
    FRONTEND_PROCESSES_ENV,
    MemberProcess,
    descendants,
    etcdpy_member,
)
from tests.tools import Etcdctl, eventually

pytestmark = pytest.mark.integration

FRONTENDS = 2
WAIT_SECONDS = 20.0


def _frontends(member: MemberProcess) -> list[int]:
    assert member.proc is not None
    return descendants(member.proc.pid)


def _wait_until(condition: Callable[[], bool], what: str, member: MemberProcess) -> None:
    try:
        eventually(condition, WAIT_SECONDS, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{member.log_tail(40)}") from None


@pytest.fixture
def member(tmp_path: Path) -> Iterator[MemberProcess]:
    m = etcdpy_member(tmp_path)
    m.env[FRONTEND_PROCESSES_ENV] = str(FRONTENDS)  # --frontend-processes (whatever the suite's)
    m.start()
    # The port answers once one front-end serves; the member is whole once all of them do (one
    # that dies before it serves fails the start).
    _wait_until(lambda: "front-end processes serving" in m.log_tail(200), "all front-ends", m)
    try:
        yield m
    finally:
        m.stop()


def test_member_serves_from_its_frontends(member: MemberProcess) -> None:
    assert len(_frontends(member)) == FRONTENDS
    ctl = Etcdctl(member.endpoint)
    assert ctl.out("put", "k", "v").strip() == "OK"
    assert ctl.out("get", "k").split() == ["k", "v"]
    assert ctl.out("get", "k", "--consistency=s").split() == ["k", "v"]
    lease = ctl.out("lease", "grant", "30").split()[1]
    assert "TTL(" in ctl.out("lease", "keep-alive", "--once", lease)
    assert ctl.out("put", "--lease", lease, "leased", "x").strip() == "OK"
    bad = ctl.run("put", "", "x", check=False)
    assert bad.returncode != 0 and "etcdserver: key is not provided" in bad.stderr
    with urllib.request.urlopen(f"{member.client_url}/health", timeout=5) as response:
        assert response.read() == b'{"health":"true","reason":""}'
    with urllib.request.urlopen(f"{member.client_url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    # The unary calls the front-ends carried were counted in the core, where /metrics lives.
    assert 'grpc_method="Put",grpc_service="etcdserverpb.KV"' in metrics
    # Every log line of the member and its front-ends is a JSON object (gRPC's own fork
    # messages would not be).
    lines = member.log_tail(10_000).splitlines()
    assert lines and all(json.loads(line) for line in lines)


def test_a_watch_through_a_frontend_sees_puts_made_through_another(
    member: MemberProcess,
) -> None:
    # Several connections: the kernel spreads them over the front-ends' sockets.
    channels = [grpc.insecure_channel(member.endpoint) for _ in range(4)]
    try:
        watch = rpc_pb2_grpc.WatchStub(channels[0])
        create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/", range_end=b"w0"))
        stream = watch.Watch(iter([create]), timeout=30)
        created = next(stream)
        assert created.created
        for i, channel in enumerate(channels):
            rpc_pb2_grpc.KVStub(channel).Put(pb.PutRequest(key=b"w/%d" % i, value=b"v"), timeout=5)
        seen: list[bytes] = []
        for response in stream:
            seen += [event.kv.key for event in response.events]
            if len(seen) >= len(channels):
                break
        assert seen == [b"w/%d" % i for i in range(len(channels))]
        stream.cancel()
    finally:
        for channel in channels:
            channel.close()


def test_a_killed_frontend_is_started_again(member: MemberProcess) -> None:
    before = _frontends(member)
    os.kill(before[0], signal.SIGKILL)
    _wait_until(
        lambda: len(_frontends(member)) == FRONTENDS and before[0] not in _frontends(member),
        "the front-end to be started again",
        member,
    )
    # A new connection (clients of the dead front-end saw theirs reset, and reconnect).
    fresh = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(member.endpoint, options=fresh) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        try:
            for i in range(20):
                kv.Put(pb.PutRequest(key=b"after/%d" % i, value=b"v"), timeout=5)
        except grpc.RpcError as exc:
            raise AssertionError(f"{exc}\n{member.log_tail(40)}") from exc
        got = kv.Range(pb.RangeRequest(key=b"after/", range_end=b"after0"), timeout=5)
    assert got.count == 20
    assert "front-end process exited; starting it again" in member.log_tail(200)


def test_frontends_die_with_a_killed_core(member: MemberProcess) -> None:
    frontends = _frontends(member)
    member.kill9()

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in frontends)

    _wait_until(gone, "the front-ends to exit", member)
    with socket.socket() as sock:  # nobody serves the port any more
        assert sock.connect_ex(("127.0.0.1", member.client_port)) != 0


def test_sigterm_stops_every_process_gracefully(member: MemberProcess) -> None:
    frontends = _frontends(member)
    done = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:  # calls in flight while the stop begins finish or fail cleanly
        with grpc.insecure_channel(member.endpoint) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            for i in range(10_000):
                if done.is_set():
                    return
                try:
                    kv.Put(pb.PutRequest(key=b"t/%d" % i, value=b"v"), timeout=5)
                except grpc.RpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                        errors.append(exc)
                    return

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.3)
    assert member.stop(signal.SIGTERM) == 0
    done.set()
    thread.join(10)
    assert errors == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in frontends)


def test_a_port_in_use_is_refused(member: MemberProcess, tmp_path: Path) -> None:
    second = etcdpy_member(tmp_path / "second")
    second.env[FRONTEND_PROCESSES_ENV] = str(FRONTENDS)
    second.client_port = member.client_port
    second.data_dir.parent.mkdir(parents=True, exist_ok=True)
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(timeout=30) != 0
    assert "cannot listen" in second.log_tail(50)
    # The first member still serves.
    assert Etcdctl(member.endpoint).out("put", "still", "here").strip() == "OK"
