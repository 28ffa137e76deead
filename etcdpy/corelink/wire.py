"""The record format of the core link (pure; no I/O).

Request record:  call id (u32), method number (u16), payload length (u32), payload.
Response record: call id (u32), status code (u8: a gRPC code, 0 is OK), payload length (u32),
payload (the response's protobuf bytes for OK, else the error's UTF-8 text).

Method numbers index ``LINK_METHODS``, computed alike on both sides from the compiled service
descriptors, so a front-end and its core (always the same installed etcdpy) agree on them.
Number ``HELLO`` is not a method: a front-end sends it once, when its client listeners are up.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from etcdpy.pb.etcdserverpb import rpc_pb2

REQUEST_HEADER = struct.Struct("<IHI")
RESPONSE_HEADER = struct.Struct("<IBI")
MAX_PAYLOAD = 2**31 - 1
PACKAGE = "etcdserverpb"


def _unary_methods() -> tuple[str, ...]:
    paths = []
    for service in rpc_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            if not (method.client_streaming or method.server_streaming):
                paths.append(f"/{PACKAGE}.{service.name}/{method.name}")
    return tuple(sorted(paths))


# One message of a LeaseKeepAlive stream: front-ends end those streams themselves and send each
# keep-alive across as a call of its own.
KEEP_ALIVE_MESSAGE = f"/{PACKAGE}.Lease/LeaseKeepAlive:message"
LINK_METHODS: tuple[str, ...] = (*_unary_methods(), KEEP_ALIVE_MESSAGE)
METHOD_NUMBER: dict[str, int] = {path: i for i, path in enumerate(LINK_METHODS)}
HELLO = 0xFFFF


def encode_request(call_id: int, method: int, payload: bytes) -> bytes:
    return REQUEST_HEADER.pack(call_id, method, len(payload)) + payload


def encode_response(call_id: int, code: int, payload: bytes) -> bytes:
    return RESPONSE_HEADER.pack(call_id, code, len(payload)) + payload


class RecordReader:
    """Cuts a byte stream into records; keeps the tail of a record cut by a read."""

    __slots__ = ("_buffer", "_header")

    def __init__(self, header: struct.Struct) -> None:
        self._header = header
        self._buffer = b""

    def feed(self, data: bytes) -> Iterator[tuple[int, int, bytes]]:
        """Yields (call id, method number or status code, payload) for each whole record."""
        buf = self._buffer + data if self._buffer else data
        header = self._header
        size = header.size
        unpack = header.unpack_from
        pos = 0
        end = len(buf)
        while end - pos >= size:
            call_id, kind, length = unpack(buf, pos)
            if length > MAX_PAYLOAD:
                raise ValueError(f"core link record of {length} bytes")
            stop = pos + size + length
            if stop > end:
                break
            yield call_id, kind, buf[pos + size : stop]
            pos = stop
        self._buffer = buf[pos:]
