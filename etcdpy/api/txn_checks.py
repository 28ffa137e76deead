"""Request checks done before anything reaches the log, with etcd's rules and errors.

The duplicate-key rule of a txn: no key may be put twice, or be both put and deleted, in one
path through a txn (then and else branches are exclusive, so the same key in both is fine).
Deletes are intervals compared with etcd's affine string order, where an empty end means
"to infinity"; as in etcd, a from-key delete (range_end "\\0") never conflicts.
"""

from __future__ import annotations

from collections.abc import Sequence

from etcdpy import errors
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

_INFINITY = None  # an interval end of "to infinity" (etcd's empty affine string)


class _Intervals:
    """Half-open key intervals [begin, end); few per txn, so a list is enough."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes | None]] = []

    def add(self, begin: bytes, end: bytes | None) -> None:
        self.items.append((begin, end))

    def contains_point(self, key: bytes) -> bool:
        return any(begin <= key and (end is None or key < end) for begin, end in self.items)


def _delete_interval(req: pb.DeleteRangeRequest) -> tuple[bytes, bytes | None]:
    if not req.range_end:
        return req.key, req.key + b"\x00"
    return req.key, req.range_end


def check_range(req: pb.RangeRequest) -> None:
    if not req.key:
        raise errors.EmptyKey()


def check_put(req: pb.PutRequest) -> None:
    if not req.key:
        raise errors.EmptyKey()
    if req.ignore_value and req.value:
        raise errors.ValueProvided()
    if req.ignore_lease and req.lease != 0:
        raise errors.LeaseProvided()


def check_delete(req: pb.DeleteRangeRequest) -> None:
    if not req.key:
        raise errors.EmptyKey()


def check_txn(req: pb.TxnRequest, max_txn_ops: int) -> None:
    _check_txn_shape(req, max_txn_ops)
    for branch in (req.success, req.failure):
        # A branch of one put, range or delete cannot clash with itself (the common
        # Kubernetes txn): only longer branches, or nested txns, need the interval check.
        if len(branch) > 1 or (branch and branch[0].WhichOneof("request") == "request_txn"):
            _check_intervals(branch)


def _check_txn_shape(req: pb.TxnRequest, max_txn_ops: int) -> None:
    ops = max(len(req.compare), len(req.success), len(req.failure))
    if ops > max_txn_ops:
        raise errors.TooManyOps()
    for compare in req.compare:
        if not compare.key:
            raise errors.EmptyKey()
    for op in req.success:
        _check_op(op, max_txn_ops - ops)
    for op in req.failure:
        _check_op(op, max_txn_ops - ops)


def _check_op(op: pb.RequestOp, max_txn_ops: int) -> None:
    which = op.WhichOneof("request")
    if which == "request_range":
        check_range(op.request_range)
    elif which == "request_put":
        check_put(op.request_put)
    elif which == "request_delete_range":
        check_delete(op.request_delete_range)
    elif which == "request_txn":
        _check_txn_shape(op.request_txn, max_txn_ops)
    else:  # an empty op (the gateway's JSON with none of the fields it knows): etcd's answer
        raise errors.KeyNotFound()


def _check_intervals(
    ops: Sequence[pb.RequestOp],
) -> tuple[set[bytes], _Intervals]:
    deletes = _Intervals()
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            deletes.add(*_delete_interval(op.request_delete_range))

    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        then_puts, then_deletes = _check_intervals(op.request_txn.success)
        else_puts, else_deletes = _check_intervals(op.request_txn.failure)
        for key in sorted(then_puts):
            if key in puts or deletes.contains_point(key):
                raise errors.DuplicateKey()
            puts.add(key)
        for key in sorted(else_puts):
            if (key in puts and key not in then_puts) or deletes.contains_point(key):
                raise errors.DuplicateKey()
            puts.add(key)
        # etcd folds the children's deletes in through an interval-tree union that drops
        # inverted intervals (begin >= end); they could never match a key anyway.
        for begin, end in then_deletes.items + else_deletes.items:
            if end is _INFINITY or begin < end:
                deletes.add(begin, end)

    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        key = op.request_put.key
        if key in puts or deletes.contains_point(key):
            raise errors.DuplicateKey()
        puts.add(key)
    return puts, deletes
