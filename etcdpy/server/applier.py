"""Applies committed requests to the MVCC store, with etcd's semantics for every KV operation.

Pure with respect to I/O ordering: it is called by the apply loop with entries in log order and
never touches raft or the network. A request that fails (e.g. a compacted revision inside a txn)
yields an ``EtcdError`` result for its waiter; the entry is still consumed, as in etcd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import structlog

from etcdpy import errors
from etcdpy.auth import apply as auth_apply
from etcdpy.auth.store import AuthStore
from etcdpy.lease import apply as lease_apply
from etcdpy.lease.lessor import Lessor
from etcdpy.mvcc.errors import CompactedError, FutureRevError
from etcdpy.mvcc.kvstore import KVStore, RangeResult
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.mvccpb import kv_pb2 as mvccpb

if TYPE_CHECKING:
    from etcdpy.server.ops.alarms import AlarmStore

log = structlog.get_logger(__name__)

Response = Any  # one of the etcdserverpb *Response messages, or an EtcdError


class Reader(Protocol):
    def range(
        self,
        key: bytes,
        end: bytes | None,
        rev: int = 0,
        limit: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
        raw: bool = False,
    ) -> RangeResult: ...


# RangeResponse.kvs is field 2, length-delimited: its tag byte on the wire.
_KVS_TAG = b"\x12"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Tag and length of every KeyValue up to 16 KiB, made once (two varint bytes at most).
_PREFIXED_SIZES = 1 << 14
_KVS_PREFIXES = [_KVS_TAG + _varint(size) for size in range(_PREFIXED_SIZES)]


def _kvs_field(stored: list[bytes]) -> bytes:
    """KeyValues as the store holds them (serialized), as RangeResponse.kvs on the wire."""
    prefixes = _KVS_PREFIXES
    parts: list[bytes] = []
    append = parts.append
    for kv in stored:
        size = len(kv)
        append(prefixes[size] if size < _PREFIXED_SIZES else _KVS_TAG + _varint(size))
        append(kv)
    return b"".join(parts)


def _add_stored_kvs(resp: pb.RangeResponse, stored: list[bytes]) -> None:
    """Appends KeyValues as stored with one parse of them all, instead of a parse and a copy
    per key: a large range is mostly this."""
    resp.MergeFromString(_kvs_field(stored))


class EncodedRange:
    """A RangeResponse whose KeyValues stay serialized as stored: ``response`` has the header,
    count and more; ``encode`` appends the kvs field to it (protobuf accepts fields in any
    order), so a large range is never parsed and serialized again."""

    __slots__ = ("_stored", "response")

    def __init__(self, response: pb.RangeResponse, stored: list[bytes]) -> None:
        self.response = response
        self._stored = stored

    @property
    def header(self) -> pb.ResponseHeader:
        return self.response.header

    def encode(self) -> bytes:
        return self.response.SerializeToString() + _kvs_field(self._stored)


_SORT_KEYS: dict[int, Callable[[mvccpb.KeyValue], Any]] = {
    pb.RangeRequest.KEY: lambda kv: kv.key,
    pb.RangeRequest.VERSION: lambda kv: kv.version,
    pb.RangeRequest.CREATE: lambda kv: kv.create_revision,
    pb.RangeRequest.MOD: lambda kv: kv.mod_revision,
    pb.RangeRequest.VALUE: lambda kv: kv.value,
}


def _end(range_end: bytes) -> bytes | None:
    return range_end or None


def mvcc_error(exc: Exception) -> errors.EtcdError:
    if isinstance(exc, CompactedError):
        return errors.Compacted()
    if isinstance(exc, FutureRevError):
        return errors.FutureRev()
    raise exc


def apply_range(
    reader: Reader, req: pb.RangeRequest, resp: pb.RangeResponse | None = None
) -> pb.RangeResponse:
    """etcd's applierV3backend.Range: filters and sorting happen after the store's range.

    Fills ``resp`` when given (a txn's response slot), so no copy is made."""
    answer = _range(reader, req, resp, encoded=False)
    assert isinstance(answer, pb.RangeResponse)
    return answer


def encoded_range(reader: Reader, req: pb.RangeRequest) -> pb.RangeResponse | EncodedRange:
    """``apply_range`` for a Range call's own answer: the KeyValues stay serialized when
    nothing (sorting, filters, keys_only) needs them parsed."""
    return _range(reader, req, None, encoded=True)


def _range(
    reader: Reader, req: pb.RangeRequest, resp: pb.RangeResponse | None, encoded: bool
) -> pb.RangeResponse | EncodedRange:
    filtered = (
        req.min_mod_revision
        or req.max_mod_revision
        or req.min_create_revision
        or req.max_create_revision
    )
    limit = req.limit
    sort_order = req.sort_order
    if req.sort_target != pb.RangeRequest.KEY and sort_order == pb.RangeRequest.NONE:
        sort_order = pb.RangeRequest.ASCEND  # the store returns key order already
    in_store_order = sort_order == pb.RangeRequest.NONE or (
        req.sort_target == pb.RangeRequest.KEY and sort_order == pb.RangeRequest.ASCEND
    )
    if not in_store_order or filtered:
        limit = 0  # fetch everything, then sort and cut
    if limit > 0:
        limit += 1  # one more to know whether there is "more"
    raw = in_store_order and not filtered and not req.count_only
    result = reader.range(
        req.key,
        _end(req.range_end),
        rev=req.revision,
        limit=limit,
        count_only=req.count_only,
        keys_only=req.keys_only and not raw,
        raw=raw,
    )
    if resp is None:
        resp = pb.RangeResponse()
    resp.count = result.count
    resp.header.revision = result.rev
    if raw:
        stored = cast(list[bytes], result.kvs)  # read raw: serialized KeyValues
        if req.limit > 0 and len(stored) > req.limit:
            stored = stored[: req.limit]
            resp.more = True
        if encoded and not req.keys_only:
            return EncodedRange(resp, stored)
        _add_stored_kvs(resp, stored)
        if req.keys_only:
            for kv in resp.kvs:
                kv.ClearField("value")
        return resp
    kvs = result.kvs
    if filtered:
        kvs = [kv for kv in kvs if _passes_filters(req, kv)]
    if not in_store_order:
        kvs = sorted(
            kvs,
            key=_SORT_KEYS[req.sort_target],
            reverse=sort_order == pb.RangeRequest.DESCEND,
        )
    if req.limit > 0 and len(kvs) > req.limit:
        kvs = kvs[: req.limit]
        resp.more = True
    if req.keys_only:
        for kv in kvs:
            kv.value = b""
    resp.kvs.extend(kvs)
    return resp


def _passes_filters(req: pb.RangeRequest, kv: mvccpb.KeyValue) -> bool:
    if req.max_mod_revision and kv.mod_revision > req.max_mod_revision:
        return False
    if req.min_mod_revision and kv.mod_revision < req.min_mod_revision:
        return False
    if req.max_create_revision and kv.create_revision > req.max_create_revision:
        return False
    return not (req.min_create_revision and kv.create_revision < req.min_create_revision)


def _compare_target(compare: pb.Compare, kv: mvccpb.KeyValue) -> bool:
    target = compare.target
    if target == pb.Compare.VALUE:
        a: Any = kv.value
        b: Any = compare.value
    elif target == pb.Compare.CREATE:
        a, b = kv.create_revision, compare.create_revision
    elif target == pb.Compare.MOD:
        a, b = kv.mod_revision, compare.mod_revision
    elif target == pb.Compare.VERSION:
        a, b = kv.version, compare.version
    elif target == pb.Compare.LEASE:
        a, b = kv.lease, compare.lease
    else:
        return True
    result = compare.result
    if result == pb.Compare.EQUAL:
        return bool(a == b)
    if result == pb.Compare.NOT_EQUAL:
        return bool(a != b)
    if result == pb.Compare.GREATER:
        return bool(a > b)
    if result == pb.Compare.LESS:
        return bool(a < b)
    return True


def _compare(reader: Reader, compare: pb.Compare) -> bool:
    try:
        result = reader.range(compare.key, _end(compare.range_end))
    except (CompactedError, FutureRevError):
        return False
    if not result.kvs:
        if compare.target == pb.Compare.VALUE:
            return False  # a missing key has no value to compare, not even an empty one
        return _compare_target(compare, mvccpb.KeyValue())
    return all(_compare_target(compare, kv) for kv in result.kvs)


def txn_path(reader: Reader, req: pb.TxnRequest) -> list[bool]:
    """Which branch every (nested) txn takes, in depth-first order, evaluated up front."""
    succeeded = all(_compare(reader, c) for c in req.compare)
    path = [succeeded]
    for op in req.success if succeeded else req.failure:
        if op.WhichOneof("request") == "request_txn":
            path.extend(txn_path(reader, op.request_txn))
    return path


def is_txn_read_only(req: pb.TxnRequest) -> bool:
    return all(op.WhichOneof("request") == "request_range" for op in (*req.success, *req.failure))


def _warn_failed(req: Any, error: errors.EtcdError) -> errors.EtcdError:
    """etcd's "failed to apply request" warning, naming the request by its raft id. Only the
    failure paths call it, so a successful apply does no extra work."""
    log.warning(
        "failed to apply request",
        request_id=f"{req.header.ID:x}",
        request=_request_kind(req),
        error=error.message,
    )
    return error


def _request_kind(req: Any) -> str:
    """Which request an InternalRaftRequest carries (put, txn, lease_grant, ...)."""
    for field, _value in req.ListFields():
        if field.name not in ("header", "ID"):
            return str(field.name)
    return "empty"


class Applier:
    """Runs InternalRaftRequests against the store; returns responses or EtcdError values."""

    alarms: AlarmStore | None = None  # ops: set by the server (etcdpy.server.ops.alarms)
    auth: AuthStore | None = None  # users, roles, tokens: set by the server (etcdpy.auth)

    def __init__(self, kv: KVStore, lessor: Lessor | None = None) -> None:
        self.kv = kv
        # Without a lessor (tests of the KV alone) every lease is unknown.
        self.lessor = lessor
        self._lease_exists: Callable[[int], bool] = (
            lessor.__contains__ if lessor is not None else lambda _lease_id: False
        )

    # -- entry points ------------------------------------------------------------------

    def apply(self, req: Any, index: int) -> Response:
        alarms = self.alarms
        if alarms is not None:  # ops: alarm requests, and refusals while an alarm is active
            answer = alarms.intercept(req)
            if answer is not None:
                if isinstance(answer, errors.EtcdError):
                    _warn_failed(req, answer)
                return answer
        try:
            if req.HasField("put"):
                return self.put(req.put, index)
            if req.HasField("delete_range"):
                return self.delete_range(req.delete_range, index)
            if req.HasField("txn"):
                return self.txn(req.txn, index)
            if req.HasField("compaction"):
                return self.compaction(req.compaction, index)
            if req.HasField("range"):
                return apply_range(self.kv, req.range)
            if self.lessor is not None:
                lease_response = lease_apply.apply(self.kv, self.lessor, req, index)
                if lease_response is not None:
                    return lease_response
            if self.auth is not None:
                auth_response = auth_apply.apply(self.auth, req, index)
                if auth_response is not None:
                    return auth_response
        except (CompactedError, FutureRevError) as exc:
            return _warn_failed(req, mvcc_error(exc))
        except errors.EtcdError as exc:
            return _warn_failed(req, exc)
        return _warn_failed(req, errors.Unimplemented())

    def put(self, req: pb.PutRequest, index: int) -> Response:
        if req.lease and not req.ignore_lease and not self._lease_exists(req.lease):
            raise errors.LeaseNotFound()
        with self.kv.write(consistent_index=index) as txn:
            resp = self._put(txn, req)
        return resp

    def delete_range(self, req: pb.DeleteRangeRequest, index: int) -> Response:
        with self.kv.write(consistent_index=index) as txn:
            return self._delete_range(txn, req)

    def compaction(self, req: pb.CompactionRequest, index: int) -> Response:
        self.kv.compact(req.revision)
        resp = pb.CompactionResponse()
        resp.header.revision = self.kv.current_revision
        return resp

    def txn(self, req: pb.TxnRequest, index: int) -> Response:
        if is_txn_read_only(req):
            return self.read_only_txn(req)
        with self.kv.counted_as_one():  # compares and operations: one mvcc transaction
            path = txn_path(self.kv, req)
            self._check_txn(req, list(path))
            resp = pb.TxnResponse(succeeded=path[0])
            with self.kv.write(consistent_index=index) as txn:
                self._apply_txn_ops(txn, req, list(path), resp)
        resp.header.revision = self.kv.current_revision
        return resp

    def read_only_txn(self, req: pb.TxnRequest) -> pb.TxnResponse:
        """A txn with only ranges is served from the local store, never through the log."""
        with self.kv.counted_as_one():
            path = txn_path(self.kv, req)
            self._check_txn(req, list(path))
            resp = pb.TxnResponse(succeeded=path[0])
            self._apply_txn_ops(self.kv, req, list(path), resp)
        resp.header.revision = self.kv.current_revision
        return resp

    # -- the operations ------------------------------------------------------------------

    def _put(
        self, txn: Any, req: pb.PutRequest, resp: pb.PutResponse | None = None
    ) -> pb.PutResponse:
        if resp is None:
            resp = pb.PutResponse()
        value, lease = req.value, req.lease
        prev: mvccpb.KeyValue | None = None
        if req.ignore_value or req.ignore_lease or req.prev_kv:
            found = txn.range(req.key, None).kvs
            prev = found[0] if found else None
        if (req.ignore_value or req.ignore_lease) and prev is None:
            raise errors.KeyNotFound()
        if req.ignore_value:
            assert prev is not None
            value = prev.value
        if req.ignore_lease:
            assert prev is not None
            lease = prev.lease
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        replaced = txn.put(req.key, value, lease)
        if self.lessor is not None and (lease or (replaced is not None and replaced.lease)):
            lease_apply.track_put(self.lessor, req.key, lease, replaced)
        resp.header.revision = txn.rev
        return resp

    def _delete_range(
        self, txn: Any, req: pb.DeleteRangeRequest, resp: pb.DeleteRangeResponse | None = None
    ) -> pb.DeleteRangeResponse:
        if resp is None:
            resp = pb.DeleteRangeResponse()
        deleted = txn.delete_range(req.key, _end(req.range_end))
        if self.lessor is not None:
            lease_apply.track_deletes(self.lessor, deleted)
        resp.deleted = len(deleted)
        if req.prev_kv:
            resp.prev_kvs.extend(deleted)
        resp.header.revision = txn.rev
        return resp

    def _check_txn(self, req: pb.TxnRequest, path: list[bool]) -> int:
        """Checks the ops on the taken path before any write (etcd's checkRequests)."""
        ops = req.success if path[0] else req.failure
        consumed = 1
        for op in ops:
            which = op.WhichOneof("request")
            if which == "request_range":
                rev = op.request_range.revision
                if rev > self.kv.current_revision:
                    raise errors.FutureRev()
                if rev and rev < self.kv.compact_revision:
                    raise errors.Compacted()
            elif which == "request_put":
                put = op.request_put
                if put.lease and not put.ignore_lease and not self._lease_exists(put.lease):
                    raise errors.LeaseNotFound()
            elif which == "request_txn":
                consumed += self._check_txn(op.request_txn, path[consumed:])
        return consumed

    def _apply_txn_ops(
        self, txn: Any, req: pb.TxnRequest, path: list[bool], resp: pb.TxnResponse
    ) -> int:
        ops = req.success if path[0] else req.failure
        consumed = 1
        for op in ops:
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_range":
                apply_range(txn, op.request_range, out.response_range)
            elif which == "request_put":
                self._put(txn, op.request_put, out.response_put)
            elif which == "request_delete_range":
                self._delete_range(txn, op.request_delete_range, out.response_delete_range)
            elif which == "request_txn":
                inner = out.response_txn
                inner.succeeded = path[consumed]
                consumed += self._apply_txn_ops(txn, op.request_txn, path[consumed:], inner)
                inner.header.SetInParent()
        return consumed
