"""apply_range's fast path (KeyValues appended as stored, one parse for all) answers exactly as
the path that parses each KeyValue: same bytes on the wire for any range, limit and revision;
and a Range call's answer with the KeyValues never parsed (encoded_range) decodes to the same
response."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.kvstore import KVStore
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.applier import EncodedRange, apply_range, encoded_range

KEYS = [b"a", b"b", b"b/1", b"b/2", b"c", b"d/x", b"d/y", b"e"]


@pytest.fixture(scope="module")
def store() -> Iterator[KVStore]:
    with tempfile.TemporaryDirectory() as tmp:
        kv = KVStore(Backend(tmp + "/db"))
        for i in range(60):  # versions, deletes, values of sizes around the varint boundaries
            key = KEYS[i % len(KEYS)]
            with kv.write() as txn:
                if i % 7 == 6:
                    txn.delete_range(key, None)
                else:
                    txn.put(key, b"v" * (i * 37 % 300), lease=i % 3)
        with kv.write() as txn:  # over the table of ready-made prefixes (16 KiB)
            txn.put(b"b/3", b"w" * 40000)
        yield kv


def _parsed(kv: KVStore, req: pb.RangeRequest) -> pb.RangeResponse:
    """The same range, through the parsing path (filters off, store order)."""
    limit = req.limit + 1 if req.limit > 0 else 0
    end = None if not req.range_end else req.range_end
    result = kv.range(req.key, end, rev=req.revision, limit=limit, keys_only=req.keys_only)
    resp = pb.RangeResponse(count=result.count)
    kvs = result.kvs
    if req.limit > 0 and len(kvs) > req.limit:
        kvs, resp.more = kvs[: req.limit], True
    resp.header.revision = result.rev
    resp.kvs.extend(kvs)
    return resp


@settings(max_examples=300)
@given(
    key=st.sampled_from([*KEYS, b"\0"]),
    end=st.sampled_from([b"", b"\0", b"c", b"d0", b"z"]),
    limit=st.integers(min_value=0, max_value=10),
    rev=st.integers(min_value=0, max_value=20),
    ascend_by_key=st.booleans(),
    keys_only=st.booleans(),
)
def test_fast_path_matches_the_parsing_path(
    store: KVStore,
    key: bytes,
    end: bytes,
    limit: int,
    rev: int,
    ascend_by_key: bool,
    keys_only: bool,
) -> None:
    rev = 0 if rev == 0 else store.current_revision - rev
    req = pb.RangeRequest(
        key=key, range_end=end, limit=limit, revision=max(rev, 0), keys_only=keys_only
    )
    if ascend_by_key:
        req.sort_order = pb.RangeRequest.ASCEND  # key order is the store's order
    expected = _parsed(store, req)
    fast = apply_range(store, req)
    assert fast.SerializeToString() == expected.SerializeToString()
    # A Range call's own answer: the kvs stay serialized, appended after the other fields.
    answer = encoded_range(store, req)
    if isinstance(answer, EncodedRange):
        assert not keys_only
        answer.header.member_id = 7  # what the service fills in, as on the message
        expected.header.member_id = 7
        assert pb.RangeResponse.FromString(answer.encode()) == expected
    else:
        assert keys_only and answer.SerializeToString() == expected.SerializeToString()
