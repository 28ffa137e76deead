"""A thousand watchers on one prefix, a writer, and one client that never reads, on a real process.

The writer must finish (a write never waits for a watcher), every reading watcher must get
every event in order, the server's memory must stay bounded while the silent client's
responses pile up, and when that client finally reads it must get everything, in order,
caught up from history.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path

import grpc
import pytest

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess
from etcdpy.testing.watch_client import WatchSession
from tests.integration.shared_member import wiped

pytestmark = pytest.mark.integration


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    """One member for the module, emptied before each test."""
    return wiped(module_etcdpy_server)


WATCHERS = 1000
SESSIONS = 4
PUTS = 100
VALUE = b"v" * 4096
PREFIX, PREFIX_END = b"/load/", b"/load0"
RSS_LIMIT_BYTES = 600 * 2**20


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _event_revs(
    session: WatchSession, ids: set[int], want: int, timeout: float
) -> dict[int, list[int]]:
    """Revisions received per watch id until each has ``want`` events (or the timeout)."""
    got: dict[int, list[int]] = {i: [] for i in ids}
    complete = 0
    deadline = time.monotonic() + timeout
    while complete < len(ids) and time.monotonic() < deadline:
        try:
            r = session.get(timeout=0.5)
        except queue.Empty:
            continue
        if r.watch_id in got and r.events:
            revs = got[r.watch_id]
            revs.extend(e.kv.mod_revision for e in r.events)
            if len(revs) == want:
                complete += 1
    return got


def test_thousand_watchers_and_a_silent_client(etcdpy_server: MemberProcess) -> None:
    endpoint = etcdpy_server.endpoint
    pid = etcdpy_server.proc.pid if etcdpy_server.proc else 0
    rss_before = _rss(pid)
    with grpc.insecure_channel(endpoint) as silent_channel:
        # The silent client: one watcher with prev_kv, and it never reads a response.
        silent_requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        silent_requests.put(
            pb.WatchRequest(
                create_request=pb.WatchCreateRequest(key=PREFIX, range_end=PREFIX_END, prev_kv=True)
            )
        )
        silent = rpc_pb2_grpc.WatchStub(silent_channel).Watch(iter(silent_requests.get, None))
        sessions = [WatchSession(endpoint) for _ in range(SESSIONS)]
        try:
            ids: list[set[int]] = []
            for s in sessions:
                for _ in range(WATCHERS // SESSIONS):
                    s.create(key=PREFIX, range_end=PREFIX_END)
                created = {s.get(timeout=10).watch_id for _ in range(WATCHERS // SESSIONS)}
                ids.append(created)
            with grpc.insecure_channel(endpoint) as channel:
                kv = rpc_pb2_grpc.KVStub(channel)
                first = kv.Range(pb.RangeRequest(key=b"x"), timeout=10).header.revision + 1
                began = time.monotonic()
                for i in range(PUTS):
                    kv.Put(pb.PutRequest(key=PREFIX + b"%d" % i, value=VALUE), timeout=30)
                write_seconds = time.monotonic() - began
            want = list(range(first, first + PUTS))
            for s, s_ids in zip(sessions, ids, strict=True):
                got = _event_revs(s, s_ids, PUTS, timeout=120)
                bad = {i: r for i, r in got.items() if r != want}
                assert not bad, f"{len(bad)} watchers missed or repeated events"
            rss = _rss(pid)
            print(
                f"\n{PUTS} puts in {write_seconds:.2f}s, {WATCHERS} watchers, RSS {rss >> 20} MiB"
            )
            assert rss - rss_before < RSS_LIMIT_BYTES
            # Now the silent client reads: everything, in order, once.
            revs: list[int] = []
            for r in silent:
                revs.extend(e.kv.mod_revision for e in r.events)
                for e in r.events:
                    assert not e.HasField("prev_kv")  # every key was new
                if len(revs) >= PUTS:
                    break
            assert revs == want
        finally:
            for s in sessions:
                s.close()
            silent_requests.put(None)
            silent.cancel()


def test_benchmark_watch_command(etcdpy_server: MemberProcess) -> None:
    """`etcdpy benchmark watch` runs: every put's event reaches the probe watcher."""
    from etcdpy.tools.bench_watch import run
    from etcdpy.tools.benchmark import parse_args

    load = ["--watchers", "20", "--streams", "2", "--put-rate", "200", "--total", "100"]
    args = parse_args(["--endpoints", etcdpy_server.endpoint, "watch", *load, "--timeout", "30"])
    summary = run(args)
    assert summary.events == 100
    assert summary.put_errors == {}
    assert summary.watchers == 20 and summary.streams == 2
    assert 0 < summary.p50_ms <= summary.p99_ms <= summary.max_ms


def test_malformed_watch_request_ends_the_stream_only(etcdpy_server: MemberProcess) -> None:
    """Garbage bytes on a Watch stream: INTERNAL as grpc-go answers; the server keeps serving."""
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        # grpc-stubs wrongly require the serializers (they default to None: raw bytes)
        raw = channel.stream_stream("/etcdserverpb.Watch/Watch")  # type: ignore[call-arg]
        call = raw(iter([b"\xff\xff\xff"]), timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        details = info.value.details()
        assert details is not None and details.startswith("grpc: error unmarshalling request:")
    with WatchSession(etcdpy_server.endpoint) as s:
        s.create(key=b"still")
        assert s.get().created


def test_watch_guarantees_on_the_server(etcdpy_server: MemberProcess) -> None:
    """etcd's watch properties on the real process, with a writer running meanwhile.

    Every txn puts three keys of the prefix, so each revision has three events: they must
    come in one response (atomic), revisions must follow each other with no gap or repeat
    (ordered, unique, reliable), a progress notification must not pass an undelivered event
    (bookmarkable), and a watcher restarted from the last revision seen + 1 continues
    exactly (resumable).
    """
    import threading

    prefix, prefix_end = b"/g/", b"/g0"
    txns = 150
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        first = kv.Range(pb.RangeRequest(key=b"x"), timeout=10).header.revision + 1

        def writer() -> None:
            for i in range(txns):
                ops = [
                    pb.RequestOp(request_put=pb.PutRequest(key=prefix + b"%d/%d" % (i, j)))
                    for j in range(3)
                ]
                kv.Txn(pb.TxnRequest(success=ops), timeout=10)

        thread = threading.Thread(target=writer)
        with WatchSession(etcdpy_server.endpoint) as s:
            s.create(key=prefix, range_end=prefix_end, start_revision=first, watch_id=1)
            thread.start()
            seen: list[int] = []  # revisions in the order their events arrived
            resumed = False
            progress_asked = progress_seen = False
            deadline = time.monotonic() + 60
            while len(seen) < txns and time.monotonic() < deadline:
                r = s.get(timeout=10)
                if r.created or r.canceled:
                    continue
                if not r.events:
                    # A progress notification. Every revision touches the prefix, so its
                    # revision is exactly the last one delivered: all before it arrived
                    # first (bookmarkable), and nothing later could precede it.
                    assert r.watch_id == -1
                    assert seen == list(range(first, first + len(seen)))
                    assert r.header.revision == seen[-1]
                    progress_seen = True
                    continue
                revs = [e.kv.mod_revision for e in r.events]
                for rev in sorted(set(revs)):
                    assert revs.count(rev) == 3  # atomic: the whole txn in this response
                    seen.append(rev)
                if len(seen) >= txns // 3 and not progress_asked:
                    s.request_progress()
                    progress_asked = True
                if len(seen) >= txns // 2 and not resumed:
                    # Restart from the last revision seen + 1, as a reflector does.
                    s.cancel(1)
                    while True:  # drop what was already queued for the old watcher
                        if s.get(timeout=10).canceled:
                            break
                    s.create(
                        key=prefix, range_end=prefix_end, start_revision=seen[-1] + 1, watch_id=1
                    )
                    resumed = True
            thread.join(timeout=60)
        assert seen == list(range(first, first + txns))  # ordered, unique, no gap
        assert resumed and progress_asked and progress_seen
