"""The handler pipeline without sockets: order of the layers, error mapping, header rules,
learner and quota refusals (etcdpy.api.pipeline)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from etcdpy import errors
from etcdpy.api.interceptors import Auth, Codec, Header, MapErrors
from etcdpy.api.learner_guard import LearnerGuard
from etcdpy.api.pipeline import Interceptor, Method, Unary, build_handlers
from etcdpy.api.quota import Quota
from etcdpy.call import CallContext, invoke
from etcdpy.h2grpc.context import RequestContext
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
_RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
MEMBERS = "/etcdserverpb.Cluster/MemberList"


def _context(written: list[Any] | None = None) -> CallContext:
    async def write(message: Any) -> None:
        assert written is not None
        written.append(message)

    return RequestContext([], "test", None, write if written is not None else None)


def _run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


class FakeKV:
    def __init__(self, fail: errors.EtcdError | None = None) -> None:
        self.fail = fail
        self.calls: list[str] = []

    async def Put(self, request: pb.PutRequest, context: CallContext) -> pb.PutResponse:
        self.calls.append("Put")
        if self.fail is not None:
            raise self.fail
        return pb.PutResponse()

    async def Range(self, request: pb.RangeRequest, context: CallContext) -> pb.RangeResponse:
        self.calls.append("Range")
        return pb.RangeResponse(count=1)


class FakeCluster:
    async def MemberList(
        self, request: pb.MemberListRequest, context: CallContext
    ) -> pb.MemberListResponse:
        return pb.MemberListResponse()


class FakeWatch:
    Watch = True  # a stream: served by the handler stream_handler builds

    def stream_handler(self, method: Any, request_type: Any, serialize: Any) -> Any:
        async def watch(requests: AsyncIterator[bytes], context: CallContext) -> None:
            await context.write(b"event")

        return grpc.stream_stream_rpc_method_handler(watch)


def _fill_member(header: pb.ResponseHeader) -> None:
    header.cluster_id, header.member_id, header.raft_term = 1, 2, 3
    if not header.revision:
        header.revision = 9


def _fill_cluster(header: pb.ResponseHeader) -> None:
    header.cluster_id, header.member_id, header.raft_term = 1, 2, 3


class Member:
    def __init__(self, learner: bool = False, full: bool = False) -> None:
        self.is_learner = learner
        self.full = full
        self.nospace_raised = 0
        self.maintenance = self

    def over_quota(self, cost: int) -> bool:
        return self.full

    async def raise_nospace(self) -> None:
        self.nospace_raised += 1


def _pipeline(member: Member, quota: bool = False) -> tuple[Interceptor, ...]:
    return (
        Codec(),
        MapErrors(),
        Auth(),
        LearnerGuard(member),
        Quota(member, quota),
        Header(_fill_member, _fill_cluster),
    )


def _services(kv: FakeKV) -> dict[str, object]:
    return {"KV": kv, "Cluster": FakeCluster(), "Watch": FakeWatch()}


def test_interceptors_run_in_their_order_outermost_first() -> None:
    seen: list[str] = []

    class Record(Interceptor):
        def __init__(self, name: str) -> None:
            self.name = name

        def unary(self, method: Method, call: Unary) -> Unary:
            async def recorded(request: Any, context: CallContext) -> Any:
                seen.append(f"{self.name} in")
                response = await call(request, context)
                seen.append(f"{self.name} out")
                return response

            return recorded

    handlers = build_handlers(
        _services(FakeKV()), (Record("a"), Codec(), Record("b")), only=[("KV", "Put")]
    )
    code, _, payload = _run(invoke(handlers[PUT], b"", _context()))
    assert (code, payload) == (0, b"")
    assert seen == ["a in", "b in", "b out", "a out"]
    assert seen[1] == "b in"  # inside the codec: it got the parsed request


def test_an_etcd_error_is_etcds_status_and_an_unexpected_one_unknown() -> None:
    handlers = build_handlers(_services(FakeKV(errors.EmptyKey())), _pipeline(Member()))
    assert _run(invoke(handlers[PUT], b"", _context())) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "etcdserver: key is not provided",
        None,
    )
    failing = build_handlers(_services(FakeKV(RuntimeError("boom"))), _pipeline(Member()))  # type: ignore[arg-type]
    code, details, _ = _run(invoke(failing[PUT], b"", _context()))
    assert code == grpc.StatusCode.UNKNOWN.value[0]
    assert details == "Unexpected <class 'RuntimeError'>: boom"


def test_malformed_request_and_unimplemented_method_answer_as_grpc_go() -> None:
    handlers = build_handlers(_services(FakeKV()), _pipeline(Member()))
    code, details, _ = _run(invoke(handlers[PUT], b"\xff\xff", _context()))
    assert code == grpc.StatusCode.INTERNAL.value[0]
    assert details.startswith("grpc: error unmarshalling request: ")
    code, details, _ = _run(invoke(handlers["/etcdserverpb.KV/Txn"], b"", _context()))
    assert (code, details) == (
        grpc.StatusCode.UNIMPLEMENTED.value[0],
        "etcdpy: KV.Txn is not implemented yet",
    )


def test_header_rules_member_with_revision_cluster_without() -> None:
    handlers = build_handlers(_services(FakeKV()), _pipeline(Member()))
    _, _, payload = _run(invoke(handlers[PUT], b"", _context()))
    header = pb.PutResponse.FromString(payload).header
    assert (header.cluster_id, header.member_id, header.raft_term, header.revision) == (1, 2, 3, 9)
    _, _, payload = _run(invoke(handlers[MEMBERS], b"", _context()))
    header = pb.MemberListResponse.FromString(payload).header
    assert (header.cluster_id, header.member_id, header.raft_term, header.revision) == (1, 2, 3, 0)


def test_a_learner_refuses_all_but_status_and_serializable_range() -> None:
    member = Member(learner=True)
    kv = FakeKV()
    handlers = build_handlers(_services(kv), _pipeline(member))
    refused = (_UNAVAILABLE, "etcdserver: rpc not supported for learner", None)
    assert _run(invoke(handlers[PUT], b"", _context())) == refused
    linearizable = pb.RangeRequest(key=b"a").SerializeToString()
    assert _run(invoke(handlers[RANGE], linearizable, _context())) == refused
    serializable = pb.RangeRequest(key=b"a", serializable=True).SerializeToString()
    code, _, payload = _run(invoke(handlers[RANGE], serializable, _context()))
    assert code == 0 and pb.RangeResponse.FromString(payload).count == 1
    assert kv.calls == ["Range"]
    written: list[Any] = []
    watch = handlers["/etcdserverpb.Watch/Watch"]
    assert _run(invoke(watch, _no_requests(), _context(written))) == refused
    assert written == []
    member.is_learner = False  # promoted: served from the next call on
    assert _run(invoke(handlers[PUT], b"", _context()))[0] == 0
    assert _run(invoke(watch, _no_requests(), _context(written))) == (0, "", None)
    assert written == [b"event"]


def test_over_quota_a_put_raises_the_alarm_and_is_refused() -> None:
    member = Member(full=True)
    kv = FakeKV()
    handlers = build_handlers(_services(kv), _pipeline(member, quota=True))
    assert _run(invoke(handlers[PUT], b"", _context())) == (
        _RESOURCE_EXHAUSTED,
        "etcdserver: mvcc: database space exceeded",
        None,
    )
    assert member.nospace_raised == 1 and kv.calls == []
    assert _run(invoke(handlers[RANGE], b"", _context()))[0] == 0  # reads are not guarded
    unguarded = build_handlers(_services(kv), _pipeline(member, quota=False))
    assert _run(invoke(unguarded[PUT], b"", _context()))[0] == 0


def test_layers_that_do_not_concern_a_method_add_nothing() -> None:
    kv = FakeKV()
    method: Callable[..., Any] = kv.Range
    handlers = build_handlers({"KV": kv}, (Auth(), Quota(Member(), False)), only=[("KV", "Range")])
    assert handlers[RANGE].unary_unary == method


async def _no_requests() -> AsyncIterator[bytes]:
    return
    yield b""
