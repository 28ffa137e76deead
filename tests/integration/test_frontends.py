"""Front-end processes (--frontend-processes N): a member serves its clients from N processes.

What a user sees does not change (the rest of the suite runs with N=1 and N=2 through
ETCD_FRONTEND_PROCESSES); these tests check what is particular to the process model: the
front-ends exist, share the port, are restarted when they die, die with the core, stop with it,
and do not let a second member take a port that is in use; and their read replicas: every read
through any front-end sees every write acknowledged before it, through whichever front-end, and
the replicas follow compaction, defragmentation and a restart of their front-end.
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

from etcdpy.config import CORE_LINK_DELAY_ENV
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import (
    FRONTEND_PROCESSES_ENV,
    MemberProcess,
    descendants,
    etcdpy_member,
)
from tests.external_tools import Etcdctl, eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.first_pass_only(
        "every member here is started with FRONTENDS front-ends whatever the suite's "
        "ETCD_FRONTEND_PROCESSES: the second pass would run the very same processes again"
    ),
]

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
        assert response.read() == b'{"health":"true"}'
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


def _metric(member: MemberProcess, name: str) -> float:
    with urllib.request.urlopen(f"{member.client_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name) and line[len(name)] in " {,":
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def _connections(member: MemberProcess, count: int) -> list[grpc.Channel]:
    """Separate TCP connections (the kernel spreads them over the front-ends' sockets)."""
    fresh = [("grpc.use_local_subchannel_pool", 1)]
    return [grpc.insecure_channel(member.endpoint, options=fresh) for _ in range(count)]


def test_every_read_sees_every_write_acknowledged_before_it(member: MemberProcess) -> None:
    channels = _connections(member, 6)
    kvs = [rpc_pb2_grpc.KVStub(c) for c in channels]
    handled_before = _metric(member, 'grpc_server_handled_total{grpc_code="OK",grpc_method="Range"')
    try:
        for i in range(150):
            value = b"%d" % i
            put = kvs[i % 6].Put(pb.PutRequest(key=b"ryw", value=value), timeout=5)
            for serializable, reader in ((False, kvs[(i + 1) % 6]), (True, kvs[(i + 2) % 6])):
                got = reader.Range(
                    pb.RangeRequest(key=b"ryw", serializable=serializable), timeout=5
                )
                assert [kv.value for kv in got.kvs] == [value], (i, serializable)
                assert got.header.revision >= put.header.revision
                assert got.kvs[0].mod_revision == put.header.revision
    finally:
        for channel in channels:
            channel.close()
    # Each front-end answered from its replica, and its counts reached the core's /metrics.
    handled = _metric(member, 'grpc_server_handled_total{grpc_code="OK",grpc_method="Range"')
    assert handled - handled_before == 300
    assert _metric(member, "etcdpy_frontend_reads_local_total") >= 300
    assert _metric(member, "etcdpy_frontend_reads_forwarded_total") == 0


def test_read_only_txns_are_answered_by_the_frontends(member: MemberProcess) -> None:
    """A Txn of ranges is answered from the replica (both consistencies, a compare on the
    revision just written) and sees every write acknowledged before it; a Txn that writes still
    goes through the core (its write is there)."""
    channels = _connections(member, 4)
    kvs = [rpc_pb2_grpc.KVStub(c) for c in channels]
    local_before = _metric(member, "etcdpy_frontend_reads_local_total")
    try:
        for i in range(60):
            value = b"%d" % i
            written = kvs[i % 4].Txn(
                pb.TxnRequest(
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=b"txn", value=value))]
                ),
                timeout=5,
            )
            for serializable, reader in ((False, kvs[(i + 1) % 4]), (True, kvs[(i + 2) % 4])):
                ranges = [
                    pb.RequestOp(
                        request_range=pb.RangeRequest(key=b"txn", serializable=serializable)
                    )
                ]
                got = reader.Txn(
                    pb.TxnRequest(
                        compare=[
                            pb.Compare(
                                key=b"txn",
                                target=pb.Compare.MOD,
                                result=pb.Compare.EQUAL,
                                mod_revision=written.header.revision,
                            )
                        ],
                        success=ranges,
                        failure=ranges,
                    ),
                    timeout=5,
                )
                assert got.succeeded, (i, serializable)  # the write is seen: compare holds
                assert [kv.value for kv in got.responses[0].response_range.kvs] == [value]
                assert got.header.revision >= written.header.revision
    finally:
        for channel in channels:
            channel.close()
    # 120 read-only txns, answered in the front-ends (writes are not reads: not counted).
    assert _metric(member, "etcdpy_frontend_reads_local_total") - local_before >= 120
    assert _metric(member, "etcdpy_frontend_reads_forwarded_total") == 0


def test_concurrent_reads_never_miss_an_acknowledged_write(member: MemberProcess) -> None:
    """Writers and readers on separate connections (so on both front-ends): a read that starts
    after a put was acknowledged returns that value or a newer one, for both consistencies."""
    channels = _connections(member, 8)
    acked = {b"c%d" % w: -1 for w in range(4)}
    lock = threading.Lock()
    problems: list[str] = []
    stop = threading.Event()

    def writer(index: int) -> None:
        kv = rpc_pb2_grpc.KVStub(channels[index])
        key = b"c%d" % index
        for n in range(150):
            kv.Put(pb.PutRequest(key=key, value=b"%d" % n), timeout=10)
            with lock:
                acked[key] = n

    def reader(index: int) -> None:
        kv = rpc_pb2_grpc.KVStub(channels[4 + index])
        turn = 0
        while not stop.is_set() and turn < 2000:
            turn += 1
            key = b"c%d" % (turn % 4)
            with lock:
                floor = acked[key]
            serializable = bool(turn % 2)
            got = kv.Range(pb.RangeRequest(key=key, serializable=serializable), timeout=10)
            seen = int(got.kvs[0].value) if got.kvs else -1
            if seen < floor:
                problems.append(f"{key!r}: read {seen} after {floor} was acknowledged")

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    readers = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    try:
        for thread in writers + readers:
            thread.start()
        for thread in writers:
            thread.join(120)
        stop.set()
        for thread in readers:
            thread.join(60)
    finally:
        stop.set()
        for channel in channels:
            channel.close()
    assert problems == []
    assert acked == {b"c%d" % w: 149 for w in range(4)}
    assert _metric(member, "etcdpy_frontend_reads_local_total") > 0


def test_linearizable_reads_wait_for_the_feed_of_a_slow_frontend(tmp_path: Path) -> None:
    """One front-end handles everything from the core 40 ms late (fault injection): a
    linearizable read through it still sees every write acknowledged through the other one,
    because the READ_INDEX answer comes after the feed records on the same ordered link."""
    m = etcdpy_member(tmp_path)
    m.env[FRONTEND_PROCESSES_ENV] = str(FRONTENDS)
    m.env[CORE_LINK_DELAY_ENV] = "40@1"
    m.start()
    try:
        _wait_until(lambda: "front-end processes serving" in m.log_tail(200), "front-ends", m)
        channels = _connections(m, 12)  # both front-ends get some (SO_REUSEPORT hashing)
        kvs = [rpc_pb2_grpc.KVStub(c) for c in channels]
        try:
            for i in range(48):
                value = b"%d" % i
                kvs[i % 12].Put(pb.PutRequest(key=b"slow", value=value), timeout=5)
                got = kvs[(i * 5 + 1) % 12].Range(pb.RangeRequest(key=b"slow"), timeout=5)
                assert [kv.value for kv in got.kvs] == [value], i
                read = pb.RequestOp(request_range=pb.RangeRequest(key=b"slow"))
                txn = kvs[(i * 7 + 2) % 12].Txn(pb.TxnRequest(success=[read]), timeout=5)
                assert [kv.value for kv in txn.responses[0].response_range.kvs] == [value], i
        finally:
            for channel in channels:
                channel.close()
    finally:
        m.stop()


def test_replicas_follow_compaction_and_defragmentation(member: MemberProcess) -> None:
    ctl = Etcdctl(member.endpoint)
    for i in range(30):
        ctl.out("put", f"c/{i % 5}", f"v{i}")
    rev = int(json.loads(ctl.out("get", "c/0", "-w", "json"))["header"]["revision"])
    ctl.out("compaction", "--physical", str(rev - 3))
    ctl.out("defrag")
    ctl.out("put", "c/after", "x")
    channels = _connections(member, 4)
    try:
        for channel in channels:
            kv = rpc_pb2_grpc.KVStub(channel)
            for serializable in (False, True):
                got = kv.Range(
                    pb.RangeRequest(key=b"c/", range_end=b"c0", serializable=serializable),
                    timeout=5,
                )
                assert [kv.key for kv in got.kvs] == [
                    b"c/0",
                    b"c/1",
                    b"c/2",
                    b"c/3",
                    b"c/4",
                    b"c/after",
                ]
                assert [kv.value for kv in got.kvs][:5] == [b"v25", b"v26", b"v27", b"v28", b"v29"]
                old = kv.Range(
                    pb.RangeRequest(key=b"c/0", revision=rev - 2, serializable=serializable),
                    timeout=5,
                )
                assert old.kvs[0].value == b"v25"
                with pytest.raises(grpc.RpcError) as info:
                    kv.Range(
                        pb.RangeRequest(key=b"c/0", revision=rev - 4, serializable=serializable),
                        timeout=5,
                    )
                assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
                assert (
                    info.value.details() == "etcdserver: mvcc: required revision has been compacted"
                )
    finally:
        for channel in channels:
            channel.close()
    assert _metric(member, "etcdpy_frontend_reads_local_total") >= 16


def test_watches_end_in_the_frontends_and_count_in_the_cores_metrics(
    member: MemberProcess,
) -> None:
    channels = _connections(member, 4)
    try:
        rpc_pb2_grpc.KVStub(channels[0]).Put(pb.PutRequest(key=b"p/a", value=b"old"), timeout=5)
        streams = []
        for channel in channels:
            create = pb.WatchRequest(
                create_request=pb.WatchCreateRequest(key=b"p/", range_end=b"p0", prev_kv=True)
            )
            stream = rpc_pb2_grpc.WatchStub(channel).Watch(iter([create]), timeout=30)
            assert next(stream).created
            streams.append(stream)
        assert _metric(member, "etcd_debugging_mvcc_watcher_total") == len(channels)
        assert _metric(member, "etcd_debugging_mvcc_watch_stream_total") == len(channels)
        for i, channel in enumerate(channels):
            kv = rpc_pb2_grpc.KVStub(channel)
            kv.Put(pb.PutRequest(key=b"p/a", value=b"%d" % i), timeout=5)
        kv.DeleteRange(pb.DeleteRangeRequest(key=b"p/a"), timeout=5)
        for stream in streams:
            seen: list[tuple[int, bytes, bytes]] = []
            for response in stream:
                seen += [(e.type, e.kv.value, e.prev_kv.value) for e in response.events]
                if len(seen) >= len(channels) + 1:
                    break
            values = [b"old"] + [b"%d" % i for i in range(len(channels))]
            expected = [(0, values[i + 1], values[i]) for i in range(len(channels))]
            assert seen == [*expected, (1, b"", values[-1])]
            stream.cancel()
    finally:
        for channel in channels:
            channel.close()
    assert _metric(member, "etcdpy_frontend_reads_forwarded_total") == 0
    # the streams ended in the front-ends, and the core's gauges say so
    eventually(lambda: _metric(member, "etcd_debugging_mvcc_watcher_total") == 0, 10, "no watchers")


def test_keep_alives_through_every_frontend(member: MemberProcess) -> None:
    channels = _connections(member, 4)
    try:
        lease = rpc_pb2_grpc.LeaseStub(channels[0])
        ids = [lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30), timeout=5).ID for _ in range(3)]
        lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=ids[2]), timeout=5)
        for channel in channels:
            requests = [pb.LeaseKeepAliveRequest(ID=i) for i in ids] * 5
            answers = list(
                rpc_pb2_grpc.LeaseStub(channel).LeaseKeepAlive(iter(requests), timeout=10)
            )
            assert [a.ID for a in answers] == [r.ID for r in requests]
            ttls: dict[int, set[int]] = {}
            for answer in answers:
                ttls.setdefault(answer.ID, set()).add(answer.TTL)
            # the revoked lease is answered with TTL 0, not an error
            assert ttls == {ids[0]: {30}, ids[1]: {30}, ids[2]: {0}}
            assert all(a.header.member_id and a.header.revision for a in answers)
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
        # the new front-end's replica, restored from the file, has every key
        for _ in range(8):
            again = kv.Range(
                pb.RangeRequest(key=b"after/", range_end=b"after0", serializable=True), timeout=5
            )
            assert again.count == 20
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
