"""Start a cluster of real member processes (etcdpy or etcd) on loopback, for tests, chaos
runs and benchmarks. Every member gets free ports; every process is stopped by its PID.

    with ProcessCluster.etcdpy(tmp_path, size=3) as cluster:
        cluster.wait_leader()
        ... cluster.members[0].endpoint ...
"""

from __future__ import annotations

import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from etcdpy.config import PEER_FAULTS_FILE_ENV
from etcdpy.testing.processes import (
    MemberProcess,
    etcdpy_command,
    free_ports,
)

LEADER_TIMEOUT_SECONDS = 20.0


@dataclass
class ClusterMember(MemberProcess):
    """A member whose --initial-cluster names the whole cluster."""

    initial_cluster: str = ""
    cluster_state: str = "new"
    token: str = "etcdpy-test"
    # A partition is written into this file; the member's peer transport reads it.
    faults_file: Path | None = None

    def start(self, wait: bool = True) -> None:
        if self.faults_file is not None:
            self.env[PEER_FAULTS_FILE_ENV] = str(self.faults_file)
        super().start(wait)

    def args(self) -> list[str]:
        args = super().args()
        i = args.index("--initial-cluster")
        args[i + 1] = self.initial_cluster
        return [
            *args,
            "--initial-cluster-state",
            self.cluster_state,
            "--initial-cluster-token",
            self.token,
        ]

    def ready_probe(self, channel: grpc.Channel) -> None:
        """Status answers (a learner refuses linearizable reads, as etcd's does)."""
        from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

        rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=1.0)

    def status(self, timeout: float = 1.0) -> tuple[int, int, int]:
        """(member id, leader id, raft term) as this member reports them."""
        from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

        with grpc.insecure_channel(self.endpoint) as channel:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            st = stub.Status(rpc_pb2.StatusRequest(), timeout=timeout)
            return st.header.member_id, st.leader, st.raftTerm

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ProcessCluster:
    def __init__(self, members: list[ClusterMember]) -> None:
        self.members = members

    @classmethod
    def build(
        cls,
        tmp: Path,
        binary: list[str],
        size: int = 3,
        extra_args: list[str] | None = None,
        suffix: str = "etcdpy",
        peer_scheme: str = "http",
    ) -> ProcessCluster:
        """Members m0, m1 ... (not started). With ``peer_scheme="https"``, add each member's TLS
        flags to ``extra_args`` (the same for all) or to its own ``extra_args`` before start.
        With ``unix`` (or ``unixs``), the peer URLs name sockets ``m0.sock:PORT`` ... in ``tmp``,
        the members' working directory."""
        names = [f"m{i}" for i in range(size)]
        picked = iter(free_ports(2 * size))
        ports = [(next(picked), next(picked)) for _ in names]
        members = [
            ClusterMember(
                name=name,
                data_dir=tmp / f"{name}.{suffix}",
                client_port=client,
                peer_port=peer,
                binary=binary,
                extra_args=list(extra_args or []),
                peer_scheme=peer_scheme,
                cwd=tmp if peer_scheme in ("unix", "unixs") else None,
            )
            for name, (client, peer) in zip(names, ports, strict=True)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
        for m in members:
            m.initial_cluster = initial
        return cls(members)

    @classmethod
    def etcdpy(
        cls,
        tmp: Path,
        size: int = 3,
        extra_args: list[str] | None = None,
        peer_scheme: str = "http",
    ) -> ProcessCluster:
        return cls.build(tmp, etcdpy_command(), size, extra_args, peer_scheme=peer_scheme)

    @classmethod
    def etcd(
        cls,
        tmp: Path,
        size: int = 3,
        extra_args: list[str] | None = None,
        peer_scheme: str = "http",
    ) -> ProcessCluster:
        binary = shutil.which("etcd")
        if binary is None:
            raise FileNotFoundError("etcd (Debian package etcd-server) is not installed")
        return cls.build(tmp, [binary], size, extra_args, suffix="etcd", peer_scheme=peer_scheme)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self, wait_for: int | None = None) -> ProcessCluster:
        """Starts every member; waits until the first ``wait_for`` (default all) are ready."""
        try:
            for m in self.members:
                m.start(wait=False)
            for m in self.members[:wait_for]:
                m.wait_ready()
        except BaseException:
            self.stop()  # never leave a half-started cluster behind
            raise
        return self

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None:
                m.resume()  # a stopped process cannot handle SIGTERM
            m.stop()

    def __enter__(self) -> ProcessCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def leader(self, timeout: float = LEADER_TIMEOUT_SECONDS) -> ClusterMember:
        """The member every running member agrees is leader (waits for one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen: set[int] = set()
            ids: dict[int, ClusterMember] = {}
            for m in self.members:
                if not m.running:
                    continue
                try:
                    member_id, leader, _term = m.status(timeout=0.5)
                except grpc.RpcError:
                    seen.add(-1)
                    continue
                ids[member_id] = m
                seen.add(leader)
            if len(seen) == 1:
                (leader_id,) = seen
                if leader_id in ids:
                    return ids[leader_id]
            time.sleep(0.05)
        raise TimeoutError("the cluster agrees on no leader")

    def add_member(
        self, tmp: Path, name: str, extra_args: list[str] | None = None
    ) -> ClusterMember:
        """A member process to start with --initial-cluster-state existing (not started)."""
        first = self.members[0]
        client_port, peer_port = free_ports(2)
        member = ClusterMember(
            name=name,
            data_dir=tmp / f"{name}.etcdpy",
            client_port=client_port,
            peer_port=peer_port,
            binary=first.binary,
            extra_args=list(extra_args or []),
            cluster_state="existing",
            peer_scheme=first.peer_scheme,
            cwd=first.cwd,
        )
        member.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in [*self.members, member])
        self.members.append(member)
        return member
