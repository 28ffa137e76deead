"""Bad input gets etcd's gRPC code and message, writes nothing, and the server keeps serving:
one member serves the whole module, so it also keeps serving after every case before."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess
from tests.integration.shared_member import wiped

pytestmark = pytest.mark.integration


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    return wiped(module_etcdpy_server)


@pytest.fixture
def channel(etcdpy_server: MemberProcess) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(etcdpy_server.endpoint, options=options) as ch:
        yield ch


@pytest.fixture
def kv(channel: grpc.Channel) -> rpc_pb2_grpc.KVStub:
    return rpc_pb2_grpc.KVStub(channel)


def expect_error(call: object, code: grpc.StatusCode, message: str | None) -> None:
    assert isinstance(call, grpc.RpcError), call
    assert call.code() == code, (call.code(), call.details())
    if message is not None:
        assert call.details() == message


def call(fn: object, request: object) -> object:
    try:
        return fn(request, timeout=10)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc


def revision(kv: rpc_pb2_grpc.KVStub) -> int:
    return int(kv.Range(pb.RangeRequest(key=b"any"), timeout=10).header.revision)


def assert_still_serving(kv: rpc_pb2_grpc.KVStub, rev_before: int) -> None:
    assert revision(kv) == rev_before, "a rejected request must write nothing"
    resp = kv.Put(pb.PutRequest(key=b"alive", value=b"yes"), timeout=10)
    assert resp.header.revision == rev_before + 1


def test_request_over_max_request_bytes(kv: rpc_pb2_grpc.KVStub) -> None:
    rev = revision(kv)
    big = b"x" * (1536 * 1024 + 1024)  # just over the 1.5 MiB default
    expect_error(
        call(kv.Put, pb.PutRequest(key=b"big", value=big)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: request is too large",
    )
    huge = b"x" * (3 * 1024 * 1024)  # over the gRPC limit (max request bytes + 512 KiB)
    expect_error(
        call(kv.Put, pb.PutRequest(key=b"huge", value=huge)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        None,
    )
    assert_still_serving(kv, rev)


def test_txn_over_max_txn_ops(kv: rpc_pb2_grpc.KVStub) -> None:
    rev = revision(kv)
    ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"k%d" % i)) for i in range(129)]
    expect_error(
        call(kv.Txn, pb.TxnRequest(success=ops)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: too many operations in txn request",
    )
    assert kv.Txn(pb.TxnRequest(success=ops[:128]), timeout=10).succeeded
    assert_still_serving(kv, rev + 1)


def test_empty_key(kv: rpc_pb2_grpc.KVStub) -> None:
    rev = revision(kv)
    for fn, req in (
        (kv.Put, pb.PutRequest(key=b"", value=b"v")),
        (kv.Range, pb.RangeRequest(key=b"")),
        (kv.DeleteRange, pb.DeleteRangeRequest(key=b"")),
        (kv.Txn, pb.TxnRequest(compare=[pb.Compare(key=b"")])),
    ):
        expect_error(
            call(fn, req), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"
        )
    assert_still_serving(kv, rev)


def test_range_end_before_key_is_empty_not_an_error(kv: rpc_pb2_grpc.KVStub) -> None:
    kv.Put(pb.PutRequest(key=b"m", value=b"v"), timeout=10)
    rev = revision(kv)
    resp = kv.Range(pb.RangeRequest(key=b"z", range_end=b"a"), timeout=10)
    assert list(resp.kvs) == [] and resp.count == 0
    deleted = kv.DeleteRange(pb.DeleteRangeRequest(key=b"z", range_end=b"a"), timeout=10)
    assert deleted.deleted == 0
    assert revision(kv) == rev


def test_malformed_protobuf_bytes(channel: grpc.Channel, kv: rpc_pb2_grpc.KVStub) -> None:
    rev = revision(kv)
    raw = channel.unary_unary(
        "/etcdserverpb.KV/Put",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\x80", b"\x12\x05abc"):
        result = call(raw, garbage)
        assert isinstance(result, grpc.RpcError)
        assert result.code() == grpc.StatusCode.INTERNAL  # as grpc-go answers for etcd
        details = result.details()
        assert details is not None and details.startswith("grpc: error unmarshalling request:")
    assert_still_serving(kv, rev)


def test_future_and_compacted_revisions(kv: rpc_pb2_grpc.KVStub) -> None:
    for i in range(5):
        kv.Put(pb.PutRequest(key=b"r", value=b"%d" % i), timeout=10)
    rev = revision(kv)
    future = "etcdserver: mvcc: required revision is a future revision"
    compacted = "etcdserver: mvcc: required revision has been compacted"
    expect_error(
        call(kv.Range, pb.RangeRequest(key=b"r", revision=rev + 1)),
        grpc.StatusCode.OUT_OF_RANGE,
        future,
    )
    expect_error(
        call(kv.Compact, pb.CompactionRequest(revision=rev + 1)),
        grpc.StatusCode.OUT_OF_RANGE,
        future,
    )
    kv.Compact(pb.CompactionRequest(revision=rev - 1), timeout=10)
    expect_error(
        call(kv.Compact, pb.CompactionRequest(revision=rev - 1)),
        grpc.StatusCode.OUT_OF_RANGE,
        compacted,
    )
    expect_error(
        call(kv.Range, pb.RangeRequest(key=b"r", revision=rev - 2)),
        grpc.StatusCode.OUT_OF_RANGE,
        compacted,
    )
    assert kv.Range(pb.RangeRequest(key=b"r", revision=rev - 1), timeout=10).kvs[0].value == b"3"
    assert_still_serving(kv, rev)


def test_put_with_unknown_lease(kv: rpc_pb2_grpc.KVStub) -> None:
    rev = revision(kv)
    expect_error(
        call(kv.Put, pb.PutRequest(key=b"l", value=b"v", lease=12345)),
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: requested lease not found",
    )
    assert kv.Range(pb.RangeRequest(key=b"l"), timeout=10).count == 0
    assert revision(kv) == rev


def test_duplicate_key_in_txn(kv: rpc_pb2_grpc.KVStub) -> None:
    rev = revision(kv)
    put = pb.RequestOp(request_put=pb.PutRequest(key=b"dup", value=b"1"))
    delete = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"x", range_end=b"y"))
    for ops in (
        [put, put],
        [put, pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"dup"))],
    ):
        expect_error(
            call(kv.Txn, pb.TxnRequest(success=ops)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "etcdserver: duplicate key given in txn request",
        )
    # the same key in both branches is fine: only one branch runs
    ok = kv.Txn(pb.TxnRequest(success=[put], failure=[put, delete]), timeout=10)
    assert ok.succeeded
    assert revision(kv) == rev + 1


def test_txn_with_an_empty_op_is_refused(kv: rpc_pb2_grpc.KVStub) -> None:
    """An op with none of put, range, delete or txn set (what the JSON gateway makes of
    {"Request": {...}}) is refused as etcd's checkRequestOp refuses it, in either branch and
    in a nested txn, and nothing of the txn is applied."""
    rev = revision(kv)
    put = pb.RequestOp(request_put=pb.PutRequest(key=b"e", value=b"1"))
    nested = pb.RequestOp(request_txn=pb.TxnRequest(success=[pb.RequestOp()]))
    for request in (
        pb.TxnRequest(success=[put, pb.RequestOp()]),
        pb.TxnRequest(failure=[pb.RequestOp()]),
        pb.TxnRequest(success=[put, nested]),
    ):
        expect_error(
            call(kv.Txn, request), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key not found"
        )
    assert_still_serving(kv, rev)


def test_put_ignore_value_on_missing_key(kv: rpc_pb2_grpc.KVStub) -> None:
    rev = revision(kv)
    expect_error(
        call(kv.Put, pb.PutRequest(key=b"nokey", ignore_value=True)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key not found",
    )
    expect_error(
        call(kv.Put, pb.PutRequest(key=b"k", value=b"v", ignore_value=True)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: value is provided",
    )
    assert_still_serving(kv, rev)
