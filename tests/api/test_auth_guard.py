"""The pipeline's Auth layer (etcdpy.api.auth_guard) with a small fake auth store: who the
caller is (token, gateway's authorization, certificate CN), etcd's checks before a request is
served and their codes and messages, and nothing at all when auth is off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc

from etcdpy.api.auth_guard import Auth, token_of
from etcdpy.api.interceptors import Codec, MapErrors
from etcdpy.api.pipeline import build_handlers
from etcdpy.api.watch import _Owners
from etcdpy.auth.info import CALLER, AuthInfo
from etcdpy.call import CallContext, invoke
from etcdpy.h2grpc.context import RequestContext
from etcdpy.mvcc.watcher import Watcher, WatchStream
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from tests.server.fake_auth import READ, FakeAuth

WATCH_DENIED = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
RANGE = "/etcdserverpb.KV/Range"
TXN = "/etcdserverpb.KV/Txn"
DEFRAG = "/etcdserverpb.Maintenance/Defragment"
STATUS = "/etcdserverpb.Maintenance/Status"
SNAPSHOT = "/etcdserverpb.Maintenance/Snapshot"
ALARM = "/etcdserverpb.Maintenance/Alarm"
MEMBER_ADD = "/etcdserverpb.Cluster/MemberAdd"
_DENIED = grpc.StatusCode.PERMISSION_DENIED.value[0]
_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def _run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


class KV:
    def __init__(
        self, auth: FakeAuth, bump_during_read: bool = False, enable_during_read: bool = False
    ) -> None:
        self.auth = auth
        self.callers: list[AuthInfo | None] = []
        self.bump = bump_during_read
        self.enable = enable_during_read

    async def Range(self, request: pb.RangeRequest, context: CallContext) -> pb.RangeResponse:
        self.callers.append(CALLER.get())
        if self.bump:
            self.auth.revision += 1  # the auth store changes while the read waits
        if self.enable:
            self.auth.enabled = True  # the log the read waited for turned auth on
        return pb.RangeResponse(count=1)

    async def Txn(self, request: pb.TxnRequest, context: CallContext) -> pb.TxnResponse:
        self.callers.append(CALLER.get())
        return pb.TxnResponse(succeeded=True)


class Maintenance:
    async def Defragment(
        self, request: pb.DefragmentRequest, context: CallContext
    ) -> pb.DefragmentResponse:
        return pb.DefragmentResponse()

    async def Status(self, request: pb.StatusRequest, context: CallContext) -> pb.StatusResponse:
        return pb.StatusResponse()

    async def Alarm(self, request: pb.AlarmRequest, context: CallContext) -> pb.AlarmResponse:
        return pb.AlarmResponse()

    Snapshot = True  # a stream

    def stream_handler(self, method: Any, request_type: Any, serialize: Any) -> Any:
        async def snapshot(request: Any, context: CallContext) -> AsyncIterator[Any]:
            yield pb.SnapshotResponse(blob=b"db")

        return grpc.unary_stream_rpc_method_handler(snapshot, request_type.FromString)


class Cluster:
    async def MemberAdd(
        self, request: pb.MemberAddRequest, context: CallContext
    ) -> pb.MemberAddResponse:
        return pb.MemberAddResponse()


def _handlers(auth: FakeAuth, kv: KV | None = None) -> dict[str, Any]:
    services = {"KV": kv or KV(auth), "Maintenance": Maintenance(), "Cluster": Cluster()}
    return build_handlers(services, (Codec(), MapErrors(), Auth(auth)))


def _context(
    token: str | None = None,
    authorization: str | None = None,
    cn: str | None = None,
    written: list[Any] | None = None,
) -> RequestContext:
    headers = [(b":path", b"/x")]
    if token is not None:
        headers.append((b"token", token.encode()))
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))

    async def write(message: Any) -> None:
        assert written is not None
        written.append(message)

    return RequestContext(headers, "test", None, write, cert_cn=cn)


def _range(key: bytes, range_end: bytes = b"") -> bytes:
    return pb.RangeRequest(key=key, range_end=range_end).SerializeToString()


def _auth() -> FakeAuth:
    auth = FakeAuth()
    auth.grant("alice", READ, b"a", b"b")
    return auth


def test_a_permitted_range_runs_as_its_caller() -> None:
    auth = _auth()
    kv = KV(auth)
    handlers = _handlers(auth, kv)
    token = auth.token_for("alice")
    code, _, _ = _run(invoke(handlers[RANGE], _range(b"a1"), _context(token)))
    assert code == 0
    assert kv.callers == [AuthInfo("alice", auth.revision)]
    assert CALLER.get() is None  # the caller belongs to the call only


def test_a_forbidden_range_gets_etcds_answer_and_never_reaches_the_handler() -> None:
    auth = _auth()
    kv = KV(auth)
    handlers = _handlers(auth, kv)
    token = auth.token_for("alice")
    for request in (_range(b"z"), _range(b"a", b"c"), _range(b"a", b"\x00")):
        assert _run(invoke(handlers[RANGE], request, _context(token))) == (
            _DENIED,
            "etcdserver: permission denied",
            None,
        )
    assert _run(invoke(handlers[RANGE], _range(b"a"), _context())) == (
        _INVALID_ARGUMENT,
        "etcdserver: user name is empty",
        None,
    )
    assert kv.callers == []


def test_a_bad_token_is_unauthenticated_even_with_a_certificate() -> None:
    auth = _auth()
    outcome = _run(invoke(_handlers(auth)[RANGE], _range(b"a"), _context("forged", cn="alice")))
    assert outcome == (_UNAUTHENTICATED, "etcdserver: invalid auth token", None)


def test_methods_etcd_never_asks_the_caller_of_ignore_a_bad_token() -> None:
    auth = _auth()
    code, _, _ = _run(invoke(_handlers(auth)[STATUS], b"", _context("forged")))
    assert code == 0


def test_the_gateways_authorization_and_the_certificate_name_the_caller() -> None:
    auth = _auth()
    kv = KV(auth)
    handlers = _handlers(auth, kv)
    token = auth.token_for("alice")
    assert _run(invoke(handlers[RANGE], _range(b"a"), _context(authorization=token)))[0] == 0
    assert _run(invoke(handlers[RANGE], _range(b"a"), _context(cn="alice")))[0] == 0
    assert kv.callers == [AuthInfo("alice", auth.revision)] * 2
    assert token_of([("authorization", "x"), ("token", "y")]) == "y"  # "token" wins, as in etcd


def test_a_read_during_which_the_store_changed_is_old() -> None:
    auth = _auth()
    handlers = _handlers(auth, KV(auth, bump_during_read=True))
    outcome = _run(invoke(handlers[RANGE], _range(b"a"), _context(auth.token_for("alice"))))
    assert outcome == (_INVALID_ARGUMENT, "etcdserver: revision of auth store is old", None)


def test_a_read_that_waited_for_the_log_that_enabled_auth_is_checked() -> None:
    # A follower that has not applied AuthEnable yet: etcd checks the caller after the
    # linearizable wait, so neither an anonymous read nor one outside the caller's range is served.
    for token, key, expected in (
        (None, b"a", (_INVALID_ARGUMENT, "etcdserver: user name is empty", None)),
        ("alice", b"z", (_DENIED, "etcdserver: permission denied", None)),
    ):
        auth = _auth()
        auth.enabled = False
        handlers = _handlers(auth, KV(auth, enable_during_read=True))
        context = _context(auth.token_for(token) if token else None)
        assert _run(invoke(handlers[RANGE], _range(key), context)) == expected
    auth = _auth()
    auth.enabled = False
    handlers = _handlers(auth, KV(auth, enable_during_read=True))
    context = _context(auth.token_for("alice"))
    assert _run(invoke(handlers[RANGE], _range(b"a"), context))[0] == 0


def test_a_read_only_txn_needs_read_on_every_compare_and_op_of_both_branches() -> None:
    auth = _auth()
    handlers = _handlers(auth)
    token = auth.token_for("alice")
    allowed = pb.RequestOp(request_range=pb.RangeRequest(key=b"a"))
    forbidden = pb.RequestOp(request_range=pb.RangeRequest(key=b"z"))
    compare = pb.Compare(key=b"a", target=pb.Compare.VERSION)
    for txn in (
        pb.TxnRequest(compare=[pb.Compare(key=b"z", target=pb.Compare.VERSION)]),
        pb.TxnRequest(compare=[compare], success=[allowed], failure=[forbidden]),
    ):
        outcome = _run(invoke(handlers[TXN], txn.SerializeToString(), _context(token)))
        assert outcome[:2] == (_DENIED, "etcdserver: permission denied")
    ok = pb.TxnRequest(compare=[compare], success=[allowed], failure=[allowed])
    assert _run(invoke(handlers[TXN], ok.SerializeToString(), _context(token)))[0] == 0
    # a txn that writes is checked when applied, with the auth revision of its header
    writes = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"z"))])
    assert _run(invoke(handlers[TXN], writes.SerializeToString(), _context(token)))[0] == 0


def test_admin_rpcs_need_root() -> None:
    auth = _auth()
    handlers = _handlers(auth)
    alice, root = auth.token_for("alice"), auth.token_for("root")
    activate = pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE).SerializeToString()
    for path, request in ((DEFRAG, b""), (MEMBER_ADD, b""), (ALARM, activate)):
        assert _run(invoke(handlers[path], request, _context(alice)))[:2] == (
            _DENIED,
            "etcdserver: permission denied",
        )
        assert _run(invoke(handlers[path], request, _context(root)))[0] == 0
    assert _run(invoke(handlers[ALARM], b"", _context(alice)))[0] == 0  # GET is open


def test_a_snapshot_stream_needs_root() -> None:
    auth = _auth()
    handler = _handlers(auth)[SNAPSHOT]
    written: list[Any] = []
    request = pb.SnapshotRequest().SerializeToString()
    alice = _context(auth.token_for("alice"), written=written)
    assert _run(invoke(handler, request, alice))[:2] == (_DENIED, "etcdserver: permission denied")
    assert written == []
    root = _context(auth.token_for("root"), written=written)
    assert _run(invoke(handler, request, root))[0] == 0
    assert len(written) == 1


def test_auth_off_checks_nothing_and_sets_no_caller() -> None:
    auth = _auth()
    auth.enabled = False
    kv = KV(auth)
    handlers = _handlers(auth, kv)
    assert _run(invoke(handlers[RANGE], _range(b"z"), _context("forged")))[0] == 0
    assert _run(invoke(handlers[DEFRAG], b"", _context()))[0] == 0
    assert kv.callers == [None]
    assert auth.checks == 0


class _Host:
    current_revision = 5

    def add_watcher(self, w: Watcher) -> None: ...

    def remove_watcher(self, w: Watcher) -> None: ...

    def want_progress(self, stream: WatchStream) -> None: ...

    def forget_stream(self, stream: WatchStream) -> None: ...

    def wake(self) -> None: ...


def test_a_watcher_is_checked_when_created_and_stops_when_its_permission_goes() -> None:
    auth = _auth()
    auth.grant("bob", READ, b"a", b"b")
    stream = WatchStream(_Host())
    owners = _Owners(auth, _context(auth.token_for("alice")))
    refused, _ = owners.permit(pb.WatchCreateRequest(key=b"z"))
    assert refused == WATCH_DENIED
    reason, owner = owners.permit(pb.WatchCreateRequest(key=b"a", range_end=b"a2"))
    assert (reason, owner) == ("", "alice")
    owners.add(stream.watch(b"a", b"a2"), owner)
    stream.drain()
    auth.revoke_all("bob")  # the revision moves; alice keeps her permission
    assert owners.recheck(stream) == []
    assert list(stream.watchers) == [0]
    auth.revoke_all("alice")
    owners.recheck(stream)
    assert stream.watchers == {}
    (canceled,) = stream.drain()
    assert (canceled.watch_id, canceled.canceled) == (0, True)
    assert canceled.cancel_reason == WATCH_DENIED
