"""The pipeline's Auth layer: who calls, and what etcd checks before a request reaches its
service (etcd 3.4's AuthInfoFromCtx / AuthInfoFromTLS, v3_server.go's Range and Txn ``chk``,
server.go's checkMembershipOperationPermission, v3rpc/maintenance.go's authMaintenanceServer).

The caller is named by the call's metadata ("token" over gRPC, "authorization" from the
gateway; "token" wins, as in etcd) or, without a token, by its verified client certificate's
CN. It is set in etcdpy.auth.info.CALLER for the call: a proposal carries it in its header and
apply checks writes as that user (etcdpy.server.apply_auth), deterministically.

Checked here, before the handler: Range and read-only Txn (a read's answer depends on no log
entry, so etcd checks it where it is served, and answers "revision of auth store is old" when
the store changed during the read); admin-only RPCs. Better than etcd 3.4 (which leaves them
open to every user): MoveLeader, Alarm activate/deactivate, and LeaseTimeToLive (read on every
attached key, etcd's later fix of CVE-2023-32082).

When auth is off a call pays one attribute read (``enabled``) and hands on its coroutine.

A front-end process runs this layer over its auth view (etcdpy.frontend.replica). Where tokens
are simple (they live in the core's memory), it gives a ``hand_off``: a call that carries a
token goes there (to the core) instead of being checked here.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from etcdpy import errors
from etcdpy.api import txn_checks
from etcdpy.api.pipeline import Interceptor, Method, Unary
from etcdpy.auth.info import CALLER, AuthChecker, AuthInfo
from etcdpy.call import CallContext, Handler
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server import apply_auth
from etcdpy.server.applier import is_txn_read_only

# A check made before the handler: raises the EtcdError etcd answers.
Rule = Callable[[AuthChecker, AuthInfo | None, Any], None]
# Where a method's calls go when they carry a token this layer cannot check.
HandOff = Callable[[Method], Unary]

# Methods whose caller etcd never reads: a bad token does not fail them. Authenticate is one
# (better than etcd, which fails it for a stale token still in the call's metadata).
NO_CALLER = frozenset(
    {
        ("Maintenance", "Status"),
        ("Cluster", "MemberList"),
        ("Lease", "LeaseKeepAlive"),
        ("Lease", "LeaseLeases"),
        ("Auth", "Authenticate"),
        ("Watch", "Watch"),  # checked per watcher (etcdpy.api.watch)
    }
)

# Reads served without the log: etcd re-checks the auth revision once they are read.
SERIALIZED_READS = frozenset({("KV", "Range"), ("KV", "Txn")})


def token_of(metadata: Any) -> str | None:
    """The auth token of a call's metadata (etcd's rpctypes: "token", else "authorization")."""
    found: str | None = None
    for name, value in metadata:
        if name == "token":
            return value if isinstance(value, str) else value.decode("latin-1")
        if name == "authorization" and found is None:
            found = value if isinstance(value, str) else value.decode("latin-1")
    return found


def caller_of(checker: AuthChecker, context: CallContext) -> AuthInfo | None:
    """etcd's EtcdServer.AuthInfoFromCtx: the token's user, else the certificate's CN, else
    nobody. A token that is not valid is an error, even with a certificate."""
    token = token_of(context.invocation_metadata())
    if token is not None:
        return checker.info_from_token(token)
    common_name = context.client_cert_cn()
    if common_name:
        return checker.info_from_cn(common_name)
    return None


def _admin(checker: AuthChecker, info: AuthInfo | None, request: Any) -> None:
    checker.check_admin(info)


def _alarm(checker: AuthChecker, info: AuthInfo | None, request: pb.AlarmRequest) -> None:
    if request.action != pb.AlarmRequest.GET:
        checker.check_admin(info)


def _no_lease_keys(lease_id: int) -> list[bytes]:
    return []


def _validators(max_txn_ops: int) -> dict[tuple[str, str], Callable[[Any], None]]:
    """etcd's v3rpc checks of a KV request, made before it reads the caller: a bad request
    gets its own error, even with a bad token (the handler makes them again)."""
    return {
        ("KV", "Range"): txn_checks.check_range,
        ("KV", "Put"): txn_checks.check_put,
        ("KV", "DeleteRange"): txn_checks.check_delete,
        ("KV", "Txn"): lambda request: txn_checks.check_txn(request, max_txn_ops),
    }


def _rules(lease_keys: apply_auth.LeaseKeys) -> dict[tuple[str, str], Rule]:
    def range_(checker: AuthChecker, info: AuthInfo | None, request: pb.RangeRequest) -> None:
        checker.check_range(info, request.key, request.range_end)

    def txn(checker: AuthChecker, info: AuthInfo | None, request: pb.TxnRequest) -> None:
        if is_txn_read_only(request):  # a txn that writes is checked when applied
            apply_auth.check_txn(checker, info, request, _no_lease_keys)

    def time_to_live(
        checker: AuthChecker, info: AuthInfo | None, request: pb.LeaseTimeToLiveRequest
    ) -> None:
        for key in lease_keys(request.ID):
            checker.check_range(info, key, b"")

    admin_methods = {
        ("Maintenance", m) for m in ("Defragment", "Hash", "HashKV", "MoveLeader", "Snapshot")
    } | {("Cluster", m) for m in ("MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote")}
    return {
        ("KV", "Range"): range_,
        ("KV", "Txn"): txn,
        ("Lease", "LeaseTimeToLive"): time_to_live,
        ("Maintenance", "Alarm"): _alarm,
        **dict.fromkeys(admin_methods, _admin),
    }


class Auth(Interceptor):
    """``checker``: the member's auth store (None: a pipeline without auth, as the local
    client's); ``lease_keys``: a lease's attached keys; ``hand_off``: where calls with a token
    go when ``checker`` cannot check tokens (a front-end with simple tokens)."""

    def __init__(
        self,
        checker: AuthChecker | None = None,
        lease_keys: apply_auth.LeaseKeys = _no_lease_keys,
        max_txn_ops: int = 128,
        hand_off: HandOff | None = None,
    ) -> None:
        self._checker = checker
        self._rules = _rules(lease_keys)
        self._validators = _validators(max_txn_ops)
        self._hand_off = hand_off

    def unary(self, method: Method, call: Unary) -> Unary:
        checker = self._checker
        if checker is None or not method.implemented or method.key in NO_CALLER:
            return call
        rule = self._rules.get(method.key)
        validate = self._validators.get(method.key)
        serialized = method.key in SERIALIZED_READS
        to_core = self._hand_off(method) if self._hand_off is not None else None

        async def checked(request: Any, context: CallContext) -> Any:
            if to_core is not None and token_of(context.invocation_metadata()) is not None:
                return await to_core(request, context)  # it checks the token, and all else
            if validate is not None:
                validate(request)
            info = caller_of(checker, context)
            reset = CALLER.set(info)
            try:
                if rule is not None:
                    rule(checker, info, request)
                response = await call(request, context)
                if (
                    serialized
                    and info is not None
                    and info.revision != checker.revision
                    and (method.name == "Range" or is_txn_read_only(request))
                ):
                    raise errors.AuthOldRevision()  # the store changed during the read
                return response
            finally:
                CALLER.reset(reset)

        async def read_then_check(request: Any, context: CallContext) -> Any:
            # Auth was off when this read arrived, but a linearizable read first waits for the
            # log, which may turn auth on: etcd checks the caller after that wait (v3_server.go's
            # Range and Txn), so a follower that had not yet applied AuthEnable must not serve it.
            response = await call(request, context)
            if checker.enabled and (method.name == "Range" or is_txn_read_only(request)):
                if to_core is not None and token_of(context.invocation_metadata()) is not None:
                    return await to_core(request, context)  # the core checks the token, reads again
                if rule is not None:
                    rule(checker, caller_of(checker, context), request)
            return response

        # A plain function handing back a coroutine: no extra frame for other calls when auth is
        # off.
        def authorized(request: Any, context: CallContext) -> Awaitable[Any]:
            if checker.enabled:
                return checked(request, context)
            if serialized:
                return read_then_check(request, context)
            return call(request, context)

        return authorized

    def stream(self, method: Method, handler: Handler) -> Handler:
        """A stream is checked once, when it opens (Snapshot needs root)."""
        checker = self._checker
        rule = self._rules.get(method.key)
        if checker is None or rule is None or not method.implemented:
            return handler
        for field in ("unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, field)
            if behavior is not None:
                guarded: Handler = cast(Any, handler)._replace(
                    **{field: _stream_checked(behavior, checker, rule)}
                )  # a grpc handler is a namedtuple
                return guarded
        return handler


async def _check_stream(
    checker: AuthChecker, rule: Rule, request: Any, context: CallContext
) -> None:
    try:
        rule(checker, caller_of(checker, context), request)
    except errors.EtcdError as exc:  # a stream maps its own errors (no errors layer around it)
        code, message = errors.to_grpc_status(exc)
        await context.abort(code, message)


def _stream_checked(
    behavior: Callable[..., Any], checker: AuthChecker, rule: Rule
) -> Callable[..., Any]:
    # grpc.aio runs a handler that is neither a coroutine function nor an async generator
    # function in a thread: keep the kind of the wrapped behavior.
    if inspect.isasyncgenfunction(behavior):

        async def responses(request: Any, context: CallContext) -> AsyncIterator[Any]:
            if checker.enabled:
                await _check_stream(checker, rule, request, context)
            async for response in behavior(request, context):
                yield response

        return responses

    async def call(request: Any, context: CallContext) -> Any:
        if checker.enabled:
            await _check_stream(checker, rule, request, context)
        return await behavior(request, context)

    return call
