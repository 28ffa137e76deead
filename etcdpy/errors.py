"""The one error hierarchy of etcdpy, with etcd's gRPC status codes and exact messages.

Every layer raises these (mvcc raises `Compacted`, the lessor `LeaseNotFound`, the server
`NoLeader` ...). The gRPC edge turns them into a status with `to_grpc_status`, once. Clients
match on the message text, so each message is etcd's, byte for byte; do not reword them.

A subclass carries its code and message as class attributes; an instance may override the
message (for example `Unimplemented("etcdpy: Downgrade is not implemented")`).
"""

from __future__ import annotations

import grpc

_C = grpc.StatusCode


class EtcdError(Exception):
    """Base of every error that reaches a client as a gRPC status."""

    code: grpc.StatusCode = _C.UNKNOWN
    message: str = "etcdserver: unknown error"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


# ---- request validation and the key-value store ----


class EmptyKey(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: key is not provided"


class KeyNotFound(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: key not found"


class ValueProvided(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: value is provided"


class LeaseProvided(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: lease is provided"


class TooManyOps(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"


class DuplicateKey(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"


class Compacted(EtcdError):
    code, message = _C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"


class FutureRev(EtcdError):
    code, message = _C.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"


class NoSpace(EtcdError):
    code, message = _C.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"


class RequestTooLarge(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: request is too large"


class TooManyRequests(EtcdError):
    code, message = _C.RESOURCE_EXHAUSTED, "etcdserver: too many requests"


# ---- leases and watches ----


class LeaseNotFound(EtcdError):
    code, message = _C.NOT_FOUND, "etcdserver: requested lease not found"


class LeaseExist(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: lease already exists"


class LeaseTTLTooLarge(EtcdError):
    code, message = _C.OUT_OF_RANGE, "etcdserver: too large lease TTL"


class WatchCanceled(EtcdError):
    code, message = _C.CANCELLED, "etcdserver: watch canceled"


# ---- membership ----


class MemberExist(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: member ID already exist"


class PeerURLExist(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"


class MemberNotEnoughStarted(EtcdError):
    code = _C.FAILED_PRECONDITION
    message = "etcdserver: re-configuration failed due to not enough started members"


class MemberBadURLs(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"


class MemberNotFound(EtcdError):
    code, message = _C.NOT_FOUND, "etcdserver: member not found"


class MemberNotLearner(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"


class LearnerNotReady(EtcdError):
    code = _C.FAILED_PRECONDITION
    message = "etcdserver: can only promote a learner member which is in sync with leader"


class TooManyLearners(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: too many learner members in cluster"


# ---- auth ----


class RootUserNotExist(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: root user does not exist"


class RootRoleNotExist(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: root user does not have root role"


class UserAlreadyExist(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: user name already exists"


class UserEmpty(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: user name is empty"


class UserNotFound(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: user name not found"


class RoleAlreadyExist(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: role name already exists"


class RoleNotFound(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: role name not found"


class RoleEmpty(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: role name is empty"


class AuthFailed(EtcdError):
    code = _C.INVALID_ARGUMENT
    message = "etcdserver: authentication failed, invalid user ID or password"


class PermissionDenied(EtcdError):
    code, message = _C.PERMISSION_DENIED, "etcdserver: permission denied"


class RoleNotGranted(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: role is not granted to the user"


class PermissionNotGranted(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: permission is not granted to the role"


class AuthNotEnabled(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: authentication is not enabled"


class InvalidAuthToken(EtcdError):
    code, message = _C.UNAUTHENTICATED, "etcdserver: invalid auth token"


class InvalidAuthMgmt(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: invalid auth management"


class AuthOldRevision(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: revision of auth store is old"


# ---- the server and the cluster ----


class NoLeader(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: no leader"


class NotLeader(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: not leader"


class LeaderChanged(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: leader changed"


class NotCapable(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: not capable"


class Stopped(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: server stopped"


class Timeout(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: request timed out"


class TimeoutDueToLeaderFail(EtcdError):
    code = _C.UNAVAILABLE
    message = "etcdserver: request timed out, possibly due to previous leader failure"


class TimeoutDueToConnectionLost(EtcdError):
    code = _C.UNAVAILABLE
    message = "etcdserver: request timed out, possibly due to connection lost"


class TimeoutWaitAppliedIndex(EtcdError):
    code = _C.UNAVAILABLE
    message = "etcdserver: request timed out, waiting for the applied index took too long"


class Unhealthy(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: unhealthy cluster"


class Corrupt(EtcdError):
    code, message = _C.DATA_LOSS, "etcdserver: corrupt cluster"


class NotSupportedForLearner(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: rpc not supported for learner"


class BadLeaderTransferee(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: bad leader transferee"


class Canceled(EtcdError):
    code, message = _C.CANCELLED, "etcdserver: request canceled"


class DeadlineExceeded(EtcdError):
    code, message = _C.DEADLINE_EXCEEDED, "etcdserver: context deadline exceeded"


# ---- downgrades (etcd 3.5) ----


class ClusterVersionUnavailable(EtcdError):
    code, message = _C.UNAVAILABLE, "etcdserver: cluster version not found during downgrade"


class WrongDowngradeVersionFormat(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: wrong downgrade target version format"


class InvalidDowngradeTargetVersion(EtcdError):
    code, message = _C.INVALID_ARGUMENT, "etcdserver: invalid downgrade target version"


class DowngradeInProcess(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: cluster has a downgrade job in progress"


class NoInflightDowngrade(EtcdError):
    code, message = _C.FAILED_PRECONDITION, "etcdserver: no inflight downgrade job"


# ---- the concurrency API (etcd's v3lock and v3election, on clientv3/concurrency) ----
# etcd returns these as plain Go errors, which gRPC sends as UNKNOWN.


class ElectionNotLeader(EtcdError):
    code, message = _C.UNKNOWN, "election: not leader"


class ElectionNoLeader(EtcdError):
    code, message = _C.UNKNOWN, "election: no leader"


class MissingLeaderKey(EtcdError):
    code, message = _C.UNKNOWN, '"leader" field must be provided'


# ---- etcdpy's own ----


class Unimplemented(EtcdError):
    """A part of the etcd API that etcdpy does not serve (yet)."""

    code, message = _C.UNIMPLEMENTED, "etcdpy: not implemented"


def _all_subclasses() -> list[type[EtcdError]]:
    found: list[type[EtcdError]] = []
    pending = list(EtcdError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


# Message -> class, for the client side (etcdpyctl, tests) to turn a status back into an error.
_BY_MESSAGE: dict[str, type[EtcdError]] = {cls.message: cls for cls in _all_subclasses()}


def to_grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The (code, message) a client receives for `exc`. Call it once, at the gRPC edge.

    Anything that is not an EtcdError is a bug or an unexpected failure: it goes out as
    UNKNOWN with its text, as etcd does for errors it has no mapping for.
    """
    if isinstance(exc, EtcdError):
        return exc.code, exc.message
    return _C.UNKNOWN, str(exc) or type(exc).__name__


def from_grpc_status(code: grpc.StatusCode, message: str) -> EtcdError:
    """The error a status stands for (client side); an unknown one keeps its code and text."""
    cls = _BY_MESSAGE.get(message)
    if cls is not None and cls.code == code:
        return cls()
    err = EtcdError(message)
    err.code = code
    return err
