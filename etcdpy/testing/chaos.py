"""Fault runs against a real three-member cluster on loopback, with a checked client history.

    python -m etcdpy.testing.chaos --kill-leader 20 --pause 3 --restart-all 2 --partition 3

Client threads write and read a few registers and write unique keys, through any member,
while faults are injected one after another: kill -9 of the leader (then restart), SIGSTOP /
SIGCONT of a member, kill -9 of every member at once (then restart), and a partition that cuts
the leader off from the others (through the peer transport's fault file). Every operation is
recorded with its start and end; at the end the history is checked for linearizability, and
every acknowledged unique-key put must be in the final state. Everything is bounded: each wait
has a deadline, and the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.checkers import READ, WRITE
from etcdpy.testing.cluster_procs import ClusterMember, ProcessCluster
from etcdpy.testing.history import History, check_history, lost_writes

REGISTERS = 8
OP_TIMEOUT = 3.0
LEADER_WAIT = 30.0


@dataclass
class ChaosReport:
    faults: dict[str, int] = field(default_factory=dict)
    operations: int = 0
    acknowledged_writes: int = 0
    acknowledged_unique_puts: int = 0
    lost_writes: int = 0
    histories_checked: int = 0
    inconclusive_keys: int = 0
    linearizable: bool = False
    failures: list[str] = field(default_factory=list)
    election_seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        times = sorted(self.election_seconds)
        return {
            "faults_injected": self.faults,
            "operations": self.operations,
            "acknowledged_writes": self.acknowledged_writes,
            "acknowledged_unique_puts": self.acknowledged_unique_puts,
            "acknowledged_writes_lost": self.lost_writes,
            "histories_checked": self.histories_checked,
            "inconclusive_keys": self.inconclusive_keys,
            "linearizable": self.linearizable,
            "new_leader_p50_s": _percentile(times, 0.50),
            "new_leader_p99_s": _percentile(times, 0.99),
            "failures": self.failures,
        }


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[index], 3)


class Client(threading.Thread):
    def __init__(
        self,
        client_id: int,
        endpoints: list[str],
        history: History,
        acked_unique: list[bytes],
        stop: threading.Event,
        seed: int,
    ) -> None:
        super().__init__(daemon=True, name=f"chaos-client-{client_id}")
        self.client_id = client_id
        self.endpoints = endpoints
        self.history = history
        self.acked_unique = acked_unique
        self.stop_event = stop
        self.rand = random.Random(seed)
        self.counter = 0

    def run(self) -> None:
        endpoint_index = self.client_id
        while not self.stop_event.is_set():
            endpoint = self.endpoints[endpoint_index % len(self.endpoints)]
            with grpc.insecure_channel(endpoint) as channel:
                kv = rpc_pb2_grpc.KVStub(channel)
                while not self.stop_event.is_set():
                    if not self._one(kv):
                        break
            endpoint_index += 1
            time.sleep(0.01)

    def _next_value(self) -> int:
        self.counter += 1
        return self.client_id * 10_000_000 + self.counter

    def _one(self, kv: rpc_pb2_grpc.KVStub) -> bool:
        """One operation; False when the member did not answer (switch members)."""
        roll = self.rand.random()
        key = self.rand.randrange(REGISTERS)
        try:
            if roll < 0.4:
                value = self._next_value()
                op = self.history.invoke(self.client_id, WRITE, key, value)
                kv.Put(pb.PutRequest(key=b"reg/%d" % key, value=b"%d" % value), timeout=OP_TIMEOUT)
                self.history.complete(op)
            elif roll < 0.8:
                op = self.history.invoke(self.client_id, READ, key)
                resp = kv.Range(pb.RangeRequest(key=b"reg/%d" % key), timeout=OP_TIMEOUT)
                seen = int(resp.kvs[0].value) if resp.kvs else None
                self.history.complete(op, seen)
            else:
                unique = b"u/%d/%d" % (self.client_id, self._next_value())
                kv.Put(pb.PutRequest(key=unique, value=b"x"), timeout=OP_TIMEOUT)
                self.acked_unique.append(unique)
        except grpc.RpcError:
            return False
        return True


def _wait_new_leader(survivors: list[ClusterMember], old_id: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        leaders = set()
        for m in survivors:
            try:
                _me, leader, _term = m.status(timeout=0.3)
            except grpc.RpcError:
                leaders.add(-1)
                continue
            leaders.add(leader)
        if len(leaders) == 1 and 0 not in leaders and old_id not in leaders and -1 not in leaders:
            return True
        time.sleep(0.02)
    return False


class ChaosRun:
    def __init__(self, cluster: ProcessCluster, workdir: Path, report: ChaosReport) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.report = report
        self.rand = random.Random(7)
        self.ids: dict[str, int] = {}

    def _count(self, fault: str) -> None:
        self.report.faults[fault] = self.report.faults.get(fault, 0) + 1

    def member_id(self, m: ClusterMember) -> int:
        if m.name not in self.ids:
            self.ids[m.name] = m.status()[0]
        return self.ids[m.name]

    def kill_leader(self) -> None:
        leader = self.cluster.leader(LEADER_WAIT)
        leader_id = self.member_id(leader)
        survivors = [m for m in self.cluster.members if m is not leader]
        started = time.monotonic()
        leader.kill9()
        self._count("kill9-leader")
        if _wait_new_leader(survivors, leader_id, started + LEADER_WAIT):
            self.report.election_seconds.append(time.monotonic() - started)
        else:
            self.report.failures.append("no new leader after kill -9 of the leader")
        time.sleep(0.3)
        leader.start(wait=True)

    def pause_member(self) -> None:
        member = self.rand.choice(self.cluster.members)
        self.member_id(member)
        member.pause()
        self._count("sigstop")
        time.sleep(2.0)
        member.resume()
        self.cluster.leader(LEADER_WAIT)

    def restart_all(self) -> None:
        for m in self.cluster.members:
            self.member_id(m)
            m.kill9()
        self._count("restart-all")
        for m in self.cluster.members:
            m.start(wait=False)
        for m in self.cluster.members:
            m.wait_ready()
        self.cluster.leader(LEADER_WAIT)

    def partition_leader(self) -> None:
        leader = self.cluster.leader(LEADER_WAIT)
        leader_id = self.member_id(leader)
        others = [m for m in self.cluster.members if m is not leader]
        started = time.monotonic()
        self._fault_file(leader).write_text("\n".join(f"{self.member_id(m):x}" for m in others))
        for m in others:
            self._fault_file(m).write_text(f"{leader_id:x}\n")
        self._count("partition-leader")
        if _wait_new_leader(others, leader_id, started + LEADER_WAIT):
            self.report.election_seconds.append(time.monotonic() - started)
        else:
            self.report.failures.append("no new leader in the majority of a partition")
        time.sleep(1.0)
        for m in self.cluster.members:
            self._fault_file(m).write_text("")
        self.cluster.leader(LEADER_WAIT)

    def _fault_file(self, member: ClusterMember) -> Path:
        return self.workdir / f"{member.name}.faults"


def run_chaos(
    workdir: Path,
    kill_leader: int,
    pause: int,
    restart_all: int,
    partition: int,
    clients: int = 6,
    log: Callable[[str], None] = print,
) -> ChaosReport:
    report = ChaosReport()
    cluster = ProcessCluster.etcdpy(workdir)
    for m in cluster.members:
        m.extra_args += ["--snapshot-count=2000"]
    # Every member reads its own fault file (a partition is written into them).
    for m in cluster.members:
        m.faults_file = workdir / f"{m.name}.faults"
    history = History()
    acked_unique: list[bytes] = []
    stop = threading.Event()
    threads: list[Client] = []
    try:
        try:
            cluster.start()
            cluster.leader(LEADER_WAIT)
            chaos = ChaosRun(cluster, workdir, report)
            threads = [
                Client(i, cluster.endpoints, history, acked_unique, stop, seed=i)
                for i in range(clients)
            ]
            for t in threads:
                t.start()
            time.sleep(1.0)
            schedule: list[Callable[[], None]] = (
                [chaos.kill_leader] * kill_leader
                + [chaos.pause_member] * pause
                + [chaos.restart_all] * restart_all
                + [chaos.partition_leader] * partition
            )
            random.Random(1).shuffle(schedule)
            for i, fault in enumerate(schedule):
                log(f"fault {i + 1}/{len(schedule)}: {fault.__name__}")
                fault()
                time.sleep(0.5)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=OP_TIMEOUT + 2)
        _final_checks(cluster, history, acked_unique, report)
    finally:
        cluster.stop()  # every member, whatever happened
    return report


def _final_checks(
    cluster: ProcessCluster, history: History, acked_unique: list[bytes], report: ChaosReport
) -> None:
    cluster.leader(LEADER_WAIT)
    endpoint = cluster.members[0].endpoint
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for key in range(REGISTERS):
            op = history.invoke(-1, READ, key)
            resp = kv.Range(pb.RangeRequest(key=b"reg/%d" % key), timeout=10)
            history.complete(op, int(resp.kvs[0].value) if resp.kvs else None)
        resp = kv.Range(pb.RangeRequest(key=b"u/", range_end=b"u0", keys_only=True), timeout=30)
        final = {kv_.key: b"" for kv_ in resp.kvs}
    # Every member must converge on the same unique keys (serializable reads, eventually).
    report.operations = len(history.ops) + len(acked_unique)
    report.acknowledged_writes = history.acknowledged_writes() + len(acked_unique)
    report.acknowledged_unique_puts = len(acked_unique)
    report.lost_writes = len(lost_writes(acked_unique, final))
    try:
        checked = check_history(history)
        report.linearizable = True
        report.histories_checked = checked.keys
        report.inconclusive_keys = checked.inconclusive
    except Exception as exc:
        report.failures.append(f"history: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kill-leader", type=int, default=20)
    parser.add_argument("--pause", type=int, default=3)
    parser.add_argument("--restart-all", type=int, default=2)
    parser.add_argument("--partition", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="etcdpy-chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run_chaos(
            workdir, args.kill_leader, args.pause, args.restart_all, args.partition, args.clients
        )
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    ok = report.linearizable and report.lost_writes == 0 and not report.failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
