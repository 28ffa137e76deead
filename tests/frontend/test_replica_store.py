"""The front-ends' read replica: a writer KVStore's change feed applied to a ReplicaStore that
reads the same LMDB file read only gives the writer's answers, whenever the replica was opened.

LMDB refuses to open one file twice in a process, so the replica runs in a child process, as
it does in a front-end, and answers over a pipe."""

from __future__ import annotations

import multiprocessing
import random
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from etcdpy.corelink.feed import COMPACT, DELETE, PUT, FeedBuilder, FeedOp, FeedUpdate, decode_feed
from etcdpy.corelink.stats import ReadCounts, add_counts, take_counts
from etcdpy.frontend.replica_store import ReplicaOutOfStep, _key_of, open_replica
from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.errors import CompactedError
from etcdpy.mvcc.kvstore import KVStore
from etcdpy.observability.metrics import GrpcStats, ServerMetrics
from etcdpy.pb.mvccpb.kv_pb2 import Event, KeyValue

MAP_SIZE = 64 * 1024 * 1024


class FeedCollector:
    """A ChangeSink that turns each commit's changes into one encoded feed record."""

    def __init__(self) -> None:
        self.builder = FeedBuilder()

    def on_events(self, events: list[Event]) -> None:
        self.builder.add_events(events)

    def on_compaction(self, rev: int) -> None:
        self.builder.add_compaction(rev)

    def on_replaced(self) -> None:
        self.builder.mark_replaced()

    def record(self, store: KVStore) -> bytes:
        return self.builder.take(store.current_revision, 7, 11, 13)


def _replica_main(path: str, conn: Connection) -> None:
    replica = open_replica(path, MAP_SIZE)
    while True:
        command, argument = conn.recv()
        try:
            if command == "apply":
                replica.apply_update(decode_feed(argument))
                answer: Any = (replica.current_revision, replica.compact_revision)
            elif command == "range":
                answer = _everything(replica, argument)
            elif command == "history":
                answer = [ev.kv.mod_revision for ev in replica.events_since(argument)]
            elif command == "apply-ops":
                replica.apply_update(argument)
                answer = None
            else:
                replica.close_reader()
                return
        except Exception as exc:
            answer = exc
        conn.send(answer)


class ReplicaProcess:
    def __init__(self, path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_replica_main, args=(str(path), child))
        self._process.start()

    def ask(self, command: str, argument: Any = None) -> Any:
        self._conn.send((command, argument))
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self._conn.send(("stop", None))
        self._process.join(10)


def _writer(tmp_path: Path) -> tuple[KVStore, FeedCollector]:
    store = KVStore(Backend(tmp_path / "db", map_size=MAP_SIZE))
    collector = FeedCollector()
    store.change_sink = collector
    return store, collector


def _everything(store: KVStore, rev: int = 0) -> list[tuple[bytes, bytes, int, int, int]]:
    result = store.range(b"", b"\0", rev=rev)
    return [
        (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in result.kvs
    ]


def test_feed_records_round_trip() -> None:
    builder = FeedBuilder()
    put = Event(kv=KeyValue(key=b"a", value=b"1", mod_revision=5, create_revision=5, version=1))
    gone = Event(type=Event.DELETE, kv=KeyValue(key=b"b", mod_revision=5))
    builder.add_events([put, gone])
    builder.add_compaction(3)
    update = decode_feed(builder.take(5, 2, 3, 4))
    assert (update.revision, update.raft_term, update.cluster_id, update.member_id) == (5, 2, 3, 4)
    assert not update.replaced
    assert [(op.kind, op.main, op.sub) for op in update.ops] == [
        (PUT, 5, 0),
        (DELETE, 5, 1),
        (COMPACT, 3, 0),
    ]
    assert KeyValue.FromString(update.ops[0].payload).value == b"1"
    assert update.ops[1].payload == b"b"
    assert not builder  # taken


def test_a_replaced_backend_drops_the_changes_before_it() -> None:
    builder = FeedBuilder()
    builder.add_compaction(3)
    builder.mark_replaced()
    update = decode_feed(builder.take(9, 1, 1, 1))
    assert update.replaced and update.ops == []


@pytest.mark.parametrize("cut", [0, 1, 5, 21])
def test_a_cut_record_is_refused(cut: int) -> None:
    builder = FeedBuilder()
    builder.add_events([Event(kv=KeyValue(key=b"k", value=b"v" * 10, mod_revision=2))])
    record = builder.take(2, 1, 1, 1)
    with pytest.raises(ValueError):
        decode_feed(record[: len(record) - 1 - cut])


@pytest.mark.parametrize("key", [b"k", b"x" * 200, b"\x0a\x00", b"k" * 20000])
def test_the_key_is_read_without_parsing_the_value(key: bytes) -> None:
    data = KeyValue(key=key, value=b"v" * 300, mod_revision=9, lease=3).SerializeToString()
    assert _key_of(data) == key


@pytest.mark.parametrize("seed", range(8))
def test_a_replica_follows_the_writer_through_puts_deletes_txns_and_compactions(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    writer, feed = _writer(tmp_path)
    replica: ReplicaProcess | None = None
    open_at = rng.randrange(0, 40)
    keys = [f"k{i}".encode() for i in range(12)]
    for step in range(80):
        roll = rng.random()
        if roll < 0.1 and writer.current_revision > writer.compact_revision + 2:
            writer.compact(rng.randrange(writer.compact_revision + 1, writer.current_revision))
        else:
            with writer.write() as txn:
                for _ in range(rng.randrange(1, 4)):
                    key = rng.choice(keys)
                    if rng.random() < 0.25:
                        txn.delete_range(key, key + b"\xff" if rng.random() < 0.3 else None)
                    else:
                        txn.put(key, f"{step}-{rng.random()}".encode())
        record = feed.record(writer)
        if step == open_at:
            # opened now: the restore has read this commit, and the record repeats it
            replica = ReplicaProcess(tmp_path / "db")
        if replica is not None:
            reached = replica.ask("apply", record)
            assert reached == (writer.current_revision, writer.compact_revision)
            for rev in range(max(writer.compact_revision, 1), writer.current_revision + 1):
                assert replica.ask("range", rev) == _everything(writer, rev)
    assert replica is not None
    if writer.compact_revision > 1:
        with pytest.raises(CompactedError):
            replica.ask("range", writer.compact_revision - 1)
    replica.close()
    writer.close()


def test_a_delete_of_a_key_the_replica_never_saw_is_out_of_step(tmp_path: Path) -> None:
    writer, _ = _writer(tmp_path)
    replica = ReplicaProcess(tmp_path / "db")
    update = FeedUpdate(5, 1, 1, 1, False, [FeedOp(DELETE, 5, 0, b"never")])
    with pytest.raises(ReplicaOutOfStep):
        replica.ask("apply-ops", update)
    replica.close()
    writer.close()


def test_a_frontends_counts_reach_the_cores_metrics_once() -> None:
    front, reads = GrpcStats(), ReadCounts()
    method = front.method("etcdserverpb.KV", "Range", "unary")
    method.started, method.msg_received, method.msg_sent = 3, 3, 2
    method.handled[0], method.handled[11] = 2, 1
    method.handling.observe(0.002)
    front.received_bytes, front.sent_bytes = 30, 200
    reads.local, reads.forwarded = 2, 1
    core = ServerMetrics()
    add_counts(core, take_counts(front, reads))
    add_counts(core, take_counts(front, reads))  # nothing new the second time
    got = core.grpc.methods[("etcdserverpb.KV", "Range")]
    assert (got.started, got.handled[0], got.handled[11], got.msg_sent) == (3, 2, 1, 2)
    assert sum(got.handling.counts) == 1 and got.handling.total == pytest.approx(0.002)
    assert (core.grpc.received_bytes, core.grpc.sent_bytes) == (30, 200)
    assert (core.frontend_reads_local, core.frontend_reads_forwarded) == (2, 1)
    assert method.started == 0 and sum(method.handled) == 0  # the front-end starts again


def test_history_the_file_no_longer_holds_is_compacted_before_the_feed_says_so(
    tmp_path: Path,
) -> None:
    writer, feed = _writer(tmp_path)
    for i in range(6):
        with writer.write() as txn:
            txn.put(b"h", b"%d" % i)
    replica = ReplicaProcess(tmp_path / "db")
    replica.ask("apply", feed.record(writer))
    assert replica.ask("history", 2) == [2, 3, 4, 5, 6, 7]
    writer.compact(5)  # the file loses revisions 2-4; the replica has not had the record yet
    with pytest.raises(CompactedError):
        replica.ask("history", 2)
    assert replica.ask("history", 5) == [5, 6, 7]
    replica.close()
    writer.close()
