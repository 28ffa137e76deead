"""The permission checks of applied requests (etcd 3.4's authApplierV3, etcdserver/apply_auth.go).

A request is checked as the user its header names (``username``, ``auth_revision``), against
the auth store as the log has built it so far, and the lessor: nothing else, so every member
decides the same. ``refusal`` answers the EtcdError etcd would (UserEmpty without a user,
AuthOldRevision for a stale revision, PermissionDenied, ...) or None.

Where etcd 3.4 is weak we do better:
- a nested txn's compares and ops are checked too (etcd's checkTxnReqsPermission skips them,
  so a nested txn could write keys its user may not);
- a put inside a txn meets a Put's rules (etcd checks only its key: its prev_kv leaked values
  of keys the user may only write);
- Compaction needs a logged-in user (etcd lets anyone compact, even without a token). Not root
  only: the Kubernetes API server compacts as whatever user it logs in as.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from etcdpy import errors
from etcdpy.auth.info import AuthChecker, AuthInfo
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

# The attached keys of a lease, sorted (so every member checks them in one order); empty for
# a lease it does not know.
LeaseKeys = Callable[[int], Iterable[bytes]]

# The auth requests themselves (etcd's needAdminPermission, UserGet, RoleGet) are checked
# where they are applied (etcdpy.auth.apply).


def header_info(req: Any) -> AuthInfo | None:
    """The caller a proposal's header names; None: proposed without one."""
    header = req.header
    if not header.username and not header.auth_revision:
        return None
    return AuthInfo(header.username, header.auth_revision)


def refusal(checker: AuthChecker, req: Any, lease_keys: LeaseKeys) -> errors.EtcdError | None:
    """Why an applied request may not run, or None (always None when auth is off)."""
    if not checker.enabled:
        return None
    info = header_info(req)
    try:
        _check(checker, info, req, lease_keys)
    except errors.EtcdError as exc:
        return exc
    return None


def _check(checker: AuthChecker, info: AuthInfo | None, req: Any, lease_keys: LeaseKeys) -> None:
    which = _request_field(req)
    if which == "put":
        check_put(checker, info, req.put, lease_keys)
    elif which == "delete_range":
        check_delete_range(checker, info, req.delete_range)
    elif which == "txn":
        check_txn(checker, info, req.txn, lease_keys)
    elif which == "range":
        checker.check_range(info, req.range.key, req.range.range_end)
    elif which == "lease_revoke":
        check_lease_keys(checker, info, lease_keys(req.lease_revoke.ID))
    elif which == "compaction" and (info is None or not info.username):
        raise errors.UserEmpty()


def _request_field(req: Any) -> str:
    """Which request an InternalRaftRequest carries (its requests are plain fields, no oneof)."""
    for field, _value in req.ListFields():
        if field.name not in ("header", "ID"):
            return str(field.name)
    return ""


def check_put(
    checker: AuthChecker, info: AuthInfo | None, put: pb.PutRequest, lease_keys: LeaseKeys
) -> None:
    checker.check_put(info, put.key)
    # The lease's keys must be writable too: a user who could not revoke the lease may not
    # attach a key to it (etcd's checkLeasePuts).
    if put.lease:
        check_lease_keys(checker, info, lease_keys(put.lease))
    if put.prev_kv:
        checker.check_range(info, put.key, b"")


def check_lease_keys(checker: AuthChecker, info: AuthInfo | None, keys: Iterable[bytes]) -> None:
    for key in keys:
        checker.check_put(info, key)


def check_delete_range(
    checker: AuthChecker, info: AuthInfo | None, delete: pb.DeleteRangeRequest
) -> None:
    if delete.prev_kv:
        checker.check_range(info, delete.key, delete.range_end)
    checker.check_delete_range(info, delete.key, delete.range_end)


def check_txn(
    checker: AuthChecker, info: AuthInfo | None, txn: pb.TxnRequest, lease_keys: LeaseKeys
) -> None:
    """etcd's checkTxnAuth: every compare needs read, every op of both branches its own
    permission. Better than etcd 3.4: nested txns are checked the same way, and a put in a
    txn meets the rules of a Put (its prev_kv needs read, its lease's keys write)."""
    for compare in txn.compare:
        checker.check_range(info, compare.key, compare.range_end)
    for op in (*txn.success, *txn.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            checker.check_range(info, op.request_range.key, op.request_range.range_end)
        elif which == "request_put":
            check_put(checker, info, op.request_put, lease_keys)
        elif which == "request_delete_range":
            check_delete_range(checker, info, op.request_delete_range)
        elif which == "request_txn":
            check_txn(checker, info, op.request_txn, lease_keys)
