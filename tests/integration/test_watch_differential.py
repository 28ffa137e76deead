"""The same watch session against etcdpy and real etcd 3.4: whole WatchResponses compared.

Every step is one where etcd is deterministic (no write races a catch-up), so the responses
must agree field by field: header (cluster and member id, revision, term), watch_id, created,
canceled, compact_revision, cancel_reason, fragment and the events with their prev_kv.
Both members advertise the same peer URL, so their ids agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member
from etcdpy.testing.watch_client import WatchSession
from tests.external_tools import require_tool

pytestmark = pytest.mark.integration

BIG_VALUE = 300 * 1024  # eight of them in one catch-up exceed etcd's 2 MiB fragment size

NOPUT = pb.WatchCreateRequest.NOPUT
NODELETE = pb.WatchCreateRequest.NODELETE


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemberProcess, MemberProcess]]:
    require_tool("etcd")
    tmp = tmp_path_factory.mktemp("watchdiff")
    etcd = etcd_member(tmp, name="wd")
    ours = etcdpy_member(tmp, name="wd")
    ours.extra_args = [
        "--initial-advertise-peer-urls",
        etcd.peer_url,
        "--initial-cluster",
        f"wd={etcd.peer_url}",
    ]
    etcd.start()
    try:
        ours.start()
        try:
            yield etcd, ours
        finally:
            ours.stop()
    finally:
        etcd.stop()


def _put(kv: Any, key: bytes, value: bytes) -> None:
    kv.Put(pb.PutRequest(key=key, value=value), timeout=10)


def _txn(kv: Any, *ops: pb.RequestOp) -> None:
    kv.Txn(pb.TxnRequest(success=list(ops)), timeout=10)


def _op_put(key: bytes, value: bytes) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))


def _op_del(key: bytes, end: bytes = b"") -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=end))


def _collect(s: WatchSession, at_least: int, quiet: float) -> list[pb.WatchResponse]:
    """The responses a step must produce (however slow the server), then any extra ones."""
    got = [s.get(timeout=20) for _ in range(at_least)]
    return got + s.collect(quiet=quiet)


def _as_dicts(responses: list[pb.WatchResponse]) -> list[dict[str, Any]]:
    """The responses, ordered per watcher only: etcd's order across watchers is its map order."""
    dicts = [json_format.MessageToDict(r) for r in responses]
    return sorted(dicts, key=lambda d: int(d.get("watchId", "0")))


def _session_script(endpoint: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Runs the script against one server; (step, responses) in order."""
    steps: list[tuple[str, list[dict[str, Any]]]] = []
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        _put(kv, b"a", b"1")  # rev 2
        _put(kv, b"b", b"2")  # rev 3
        _txn(kv, _op_put(b"a", b"3"), _op_put(b"c", b"4"))  # rev 4
        _txn(kv, _op_del(b"a"))  # rev 5
        _put(kv, b"d/x", b"5")  # rev 6
        with WatchSession(endpoint) as s:

            def step(name: str, at_least: int, quiet: float = 0.3) -> None:
                steps.append((name, _as_dicts(_collect(s, at_least, quiet))))

            s.create(key=b"a", start_revision=1, prev_kv=True)
            step("history of one key, with prev_kv", 2)
            s.create(key=b"a", range_end=b"e", start_revision=3, watch_id=7)
            step("history of a range, client-chosen id", 2)
            s.create(key=b"\x00", range_end=b"\x00", start_revision=2, filters=[NOPUT])
            step("every key from rev 2, deletes only", 2)
            s.create(key=b"x", watch_id=7)
            step("duplicate watch id", 1)
            s.create(key=b"b", range_end=b"a")
            step("empty range", 1)
            s.create(key=b"d/", range_end=b"d0", prev_kv=True)
            step("live prefix watcher created", 1)
            _txn(kv, _op_put(b"d/y", b"6"), _op_put(b"d/z", b"7"), _op_del(b"d/x"))  # rev 7
            _put(kv, b"zz", b"unwatched")  # rev 8
            _put(kv, b"d/y", b"8")  # rev 9
            step("live events: one response per revision", 5)
            s.create(key=b"c", filters=[NODELETE])
            step("no-delete watcher", 1)
            _put(kv, b"c", b"9")  # rev 10
            _txn(kv, _op_del(b"c"))  # rev 11
            step("no-delete filter drops the delete", 4)
            s.request_progress()
            step("progress request", 1)
            s.cancel(7)
            step("cancel", 1)
            s.cancel(999)
            step("cancel of an unknown id: no answer", 0)
        kv.Compact(pb.CompactionRequest(revision=5), timeout=10)
        with WatchSession(endpoint) as s:

            def step2(name: str, at_least: int, quiet: float = 0.3) -> None:
                steps.append((name, _as_dicts(_collect(s, at_least, quiet))))

            s.create(key=b"a", start_revision=3)
            step2("start revision compacted", 2)
            s.create(key=b"a", start_revision=5, prev_kv=True)
            step2("start at the compaction revision itself", 1)
            first = kv.Range(pb.RangeRequest(key=b"zz"), timeout=10).header.revision + 1
            for i in range(8):
                _put(kv, b"f/%d" % i, bytes([65 + i]) * BIG_VALUE)
            s.create(key=b"f/", range_end=b"f0", start_revision=first, fragment=True)
            step2("a large catch-up, fragmented", 3, quiet=0.5)
            s.create(key=b"f/", range_end=b"f0", start_revision=first)
            step2("the same catch-up, not fragmented", 2, quiet=0.5)
    return steps


def _brief(steps: list[tuple[str, list[dict[str, Any]]]]) -> list[tuple[str, list[Any]]]:
    """What a failing comparison prints: events without their large values."""
    out = []
    for name, responses in steps:
        short = []
        for r in responses:
            r = dict(r)
            if "events" in r:
                r["events"] = [
                    (e.get("type", "PUT"), e["kv"].get("key"), e["kv"].get("modRevision"))
                    for e in r["events"]
                ]
            short.append(r)
        out.append((name, short))
    return out


def test_watch_responses_match_etcd(pair: tuple[MemberProcess, MemberProcess]) -> None:
    etcd, ours = pair
    # Both scripts at once, one per server: each step waits out 0.3 s of silence, and the two
    # servers share nothing.
    with ThreadPoolExecutor(1) as pool:
        reference = pool.submit(_session_script, etcd.endpoint)
        got = _session_script(ours.endpoint)
        want = reference.result()
    assert [name for name, _ in got] == [name for name, _ in want]
    for (name, w), (_, g) in zip(want, got, strict=True):
        assert g == w, (
            f"step {name!r}:\n etcd:   {_brief([(name, w)])}\n etcdpy: {_brief([(name, g)])}"
        )
    # The script saw what it meant to see (not two servers agreeing on nothing).
    by_name = dict(want)
    assert len(by_name["a large catch-up, fragmented"]) > 1
    assert by_name["start revision compacted"][1]["compactRevision"] == "5"
    assert by_name["duplicate watch id"][0]["cancelReason"]
