"""etcdpyctl's key-space operations: put, get, del, compaction and watch.

Each takes a Client, an Output and plain values (no command-line objects), checks its
arguments as etcdctl 3.4 does, makes the gRPC call and prints what etcdctl prints.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from etcdpy.cli.ctl_client import (
    EXIT_BAD_ARGS,
    EXIT_BAD_FEATURE,
    EXIT_INTERRUPTED,
    Client,
    CtlError,
    rpc_message,
)
from etcdpy.cli.ctl_output import Output, message_to_json
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.pb.mvccpb import kv_pb2

__all__ = [
    "KeyRange",
    "compaction",
    "delete",
    "get",
    "key_range",
    "prefix_range_end",
    "put",
    "watch",
]

COMPACTED = "etcdserver: mvcc: required revision has been compacted"  # clientv3's ErrCompacted

_SORT_ORDERS = {"": rpc_pb2.RangeRequest.NONE, "ASCEND": rpc_pb2.RangeRequest.ASCEND,
                "DESCEND": rpc_pb2.RangeRequest.DESCEND}  # fmt: skip
_SORT_TARGETS = {"": rpc_pb2.RangeRequest.KEY, "KEY": rpc_pb2.RangeRequest.KEY,
                 "CREATE": rpc_pb2.RangeRequest.CREATE, "MODIFY": rpc_pb2.RangeRequest.MOD,
                 "VALUE": rpc_pb2.RangeRequest.VALUE,
                 "VERSION": rpc_pb2.RangeRequest.VERSION}  # fmt: skip


def prefix_range_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's rule)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"  # all 0xff: no upper bound


@dataclass(frozen=True, slots=True)
class KeyRange:
    """A key, or a range [key, range_end), as --prefix/--from-key or a second argument say."""

    key: bytes
    range_end: bytes = b""


def key_range(
    key: bytes, range_end: bytes | None = None, *, prefix: bool = False, from_key: bool = False
) -> KeyRange:
    """etcdctl's rules: an empty key with --prefix or --from-key means every key."""
    if prefix and from_key:
        raise CtlError("`--prefix` and `--from-key` cannot be set at the same time, choose one",
                       EXIT_BAD_ARGS)  # fmt: skip
    if range_end is not None:
        if prefix or from_key:
            raise CtlError("too many arguments, only accept one argument when `--prefix` "
                           "or `--from-key` is set", EXIT_BAD_ARGS)  # fmt: skip
        return KeyRange(key, range_end)
    if prefix:
        return KeyRange(key, prefix_range_end(key)) if key else KeyRange(b"\x00", b"\x00")
    if from_key:
        return KeyRange(key or b"\x00", b"\x00")
    return KeyRange(key)


# -- put, get, del, compaction ----------------------------------------------------------------


def put(
    client: Client,
    out: Output,
    key: bytes,
    value: bytes,
    *,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.KVStub(client.channel())
    request = rpc_pb2.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv,
                                 ignore_value=ignore_value, ignore_lease=ignore_lease)  # fmt: skip
    response = client.call(stub.Put, request)
    if out.is_json:
        out.json(message_to_json(response))
        return
    out.line("OK")
    if response.HasField("prev_kv"):
        out.kv(response.prev_kv)


def get(
    client: Client,
    out: Output,
    span: KeyRange,
    *,
    revision: int = 0,
    limit: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
    serializable: bool = False,
    sort_order: str = "",
    sort_target: str = "",
) -> None:
    order, target = sort_order.upper(), sort_target.upper()
    if order not in _SORT_ORDERS:
        raise CtlError(f"bad sort order {sort_order}", EXIT_BAD_FEATURE)
    if target not in _SORT_TARGETS:
        raise CtlError(f"bad sort target {sort_target}", EXIT_BAD_FEATURE)
    if out.value_only and out.fmt != "simple":
        raise CtlError("print-value-only is only for `--write-out=simple`", EXIT_BAD_ARGS)
    stub = rpc_pb2_grpc.KVStub(client.channel())
    request = rpc_pb2.RangeRequest(
        key=span.key,
        range_end=span.range_end,
        revision=max(revision, 0),
        limit=limit,
        keys_only=keys_only,
        count_only=count_only,
        serializable=serializable,
        sort_order=_SORT_ORDERS[order],
        sort_target=_SORT_TARGETS[target],
    )
    response = client.call(stub.Range, request)
    if out.is_json:
        out.json(message_to_json(response))
    elif count_only:
        out.line(str(response.count))
    elif out.is_table:
        headers = ["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"]
        out.table(headers, [_kv_row(kv) for kv in response.kvs])
    else:
        for item in response.kvs:
            out.kv(item)


def _kv_row(kv: kv_pb2.KeyValue) -> list[str]:
    text = [kv.key.decode("utf-8", "replace"), kv.value.decode("utf-8", "replace")]
    return [*text, str(kv.create_revision), str(kv.mod_revision), str(kv.version),
            f"{kv.lease:x}" if kv.lease else ""]  # fmt: skip


def delete(client: Client, out: Output, span: KeyRange, *, prev_kv: bool = False) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.KVStub(client.channel())
    request = rpc_pb2.DeleteRangeRequest(key=span.key, range_end=span.range_end, prev_kv=prev_kv)
    response = client.call(stub.DeleteRange, request)
    if out.is_json:
        out.json(message_to_json(response))
        return
    out.line(str(response.deleted))
    for item in response.prev_kvs:
        out.kv(item)


def compaction(client: Client, out: Output, revision: int, *, physical: bool = False) -> None:
    stub = rpc_pb2_grpc.KVStub(client.channel())
    client.call(stub.Compact, rpc_pb2.CompactionRequest(revision=revision, physical=physical))
    out.line(f"compacted revision {revision}")  # etcdctl prints this for every format


# -- watch ------------------------------------------------------------------------------------


def watch(
    client: Client,
    out: Output,
    span: KeyRange,
    *,
    revision: int = 0,
    prev_kv: bool = False,
    once: bool = False,
) -> None:
    """Prints events until interrupted (or, with ``once``, after the first response that has
    events). A watch the server cancels ends with etcdctl's exit code 5."""
    out.no_table()
    stub = rpc_pb2_grpc.WatchStub(client.channel())
    create = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=span.key, range_end=span.range_end, start_revision=revision, prev_kv=prev_kv
        )
    )
    requests = _RequestStream(create)
    try:
        for resp in stub.Watch(iter(requests)):
            _print_watch_response(out, resp)
            if resp.canceled:
                reason = resp.cancel_reason or (
                    COMPACTED if resp.compact_revision else "canceled")  # fmt: skip
                raise CtlError(f"watch is canceled by the server: {reason}", EXIT_INTERRUPTED)
            if once and resp.events:
                return
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED:
            return
        raise CtlError(rpc_message(err)) from None
    finally:
        requests.close()
    raise CtlError("watch is canceled by the server", EXIT_INTERRUPTED)


def _print_watch_response(out: Output, resp: rpc_pb2.WatchResponse) -> None:
    if resp.created and not resp.events:
        return  # etcdctl asks for no created notification
    if out.is_json:
        # clientv3.WatchResponse as encoding/json writes it (Go field names, no omitempty).
        out.json({
            "Header": message_to_json(resp.header),
            "Events": [message_to_json(ev) for ev in resp.events] or None,
            "CompactRevision": resp.compact_revision,
            "Canceled": resp.canceled,
            "Created": resp.created,
        })  # fmt: skip
        return
    if not resp.events and not resp.canceled and not resp.compact_revision:
        out.line(f"progress notify: {resp.header.revision}")
        return
    for ev in resp.events:
        out.line("DELETE" if ev.type == 1 else "PUT")
        if ev.HasField("prev_kv"):
            out.kv(ev.prev_kv)
        out.kv(ev.kv)
    sys.stdout.flush()


class _RequestStream:
    """The watch's request side: the create request, then nothing until closed (the stream
    must stay open for the server to keep sending)."""

    def __init__(self, first: rpc_pb2.WatchRequest) -> None:
        self._queue: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self._queue.put(first)

    def __iter__(self) -> Iterator[rpc_pb2.WatchRequest]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield item

    def close(self) -> None:
        self._queue.put(None)
