"""The record format of the core link (pure; no I/O).

Front-end to core: call id (u32), kind (u16), payload length (u32), payload.
Core to front-end: call id (u32), kind (u8), payload length (u32), payload.

A unary call is one record each way: the front-end's kind is the method's number (an index of
``LINK_METHODS``, computed alike on both sides from the compiled descriptors; a front-end and its
core are always the same installed etcdpy), the payload the request's bytes as the client sent
them; the core's kind is the gRPC status code (0: OK, payload the response's bytes; else the
error's UTF-8 text). A ``CANCEL`` record under a unary call's id says its client went away (the
core cancels the call: a Lock or a Campaign that waits).

A stream is the same call id across many records. The front-end opens it with the method's number
(payload: the request of a server-streaming call, else empty), then sends ``MESSAGE`` records
(client messages), ``HALF_CLOSE``, ``CANCEL`` (the client went away), and ``CREDIT`` (u32: how
many more messages the core may send; the core stops when it has none, so a client that does not
read holds up only its own stream, in the core, where the watch code parks slow watchers). The
core answers with ``STREAM_MESSAGE`` records, then one record whose kind is the final status code.
``HELLO`` (call id 0, payload the slot number) says a front-end's listeners are up.

Who calls (issue 17: the core checks auth, so the caller's identity crosses with its call): a
unary call or a stream opening whose client sent a ``token`` or an ``authorization`` metadata
value, or came with a verified client certificate, has the ``IDENTIFIED`` bit set in its kind,
and its payload starts with an identity block before the request's bytes::

    identity length (u32), then entries back to back: field (u8), value length (u32), value

Fields: ``TOKEN_FIELD`` and ``AUTHORIZATION_FIELD`` (a metadata value of that name, UTF-8, in
the client's order; no other metadata crosses), ``CERT_CN_FIELD`` (the certificate's common
name, UTF-8, at most once). A call without any of them (auth off: the common case) has no bit
and no block: its record is the same as before. A block that does not parse (cut short, an
unknown field, a length past the payload, bad UTF-8) fails that call with INTERNAL, and the link
goes on serving.

The read replica (etcdpy.corelink.feed): ``SUBSCRIBE`` is a call, answered with a feed record
without changes (where the store stands), after which the core sends ``FEED`` records (call
id 0) after every commit; ``READ_INDEX`` is a call answered once the core has confirmed its
leadership and applied up to the read index (OK, empty; else the status a linearizable read
would get), and so after the feed records that bring the replica that far. The core asks a
subscribed front-end for the gRPC counts of the calls it answered itself with a ``STATS``
record (call id 0, payload the u32 id of the question); the front-end answers with a
``STATS_REPLY`` record under that id (etcdpy.corelink.stats). ``RENEW`` is a call carrying the
lease ids of the keep-alives a front-end received during one turn of its event loop (i64
each); the answer has one result per id (``encode_renewals``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from etcdpy.api.services import SERVICES

# The core's private unix sockets, in its data directory: the core link, and the HTTP/1.1
# listener front-ends relay their HTTP connections to.
CORE_LINK_SOCKET = "link.sock"
CORE_HTTP_SOCKET = "front.sock"

REQUEST_HEADER = struct.Struct("<IHI")
RESPONSE_HEADER = struct.Struct("<IBI")
MAX_PAYLOAD = 2**31 - 1
PACKAGE = "etcdserverpb"


def _methods() -> tuple[str, ...]:
    paths = []
    for service in SERVICES.values():
        for method in service.descriptor.methods:
            paths.append(service.path(method.name))
    return tuple(sorted(paths))


LINK_METHODS: tuple[str, ...] = _methods()
METHOD_NUMBER: dict[str, int] = {path: i for i, path in enumerate(LINK_METHODS)}
# A method's number plus this: the same call, not counted again in the core's gRPC metrics
# (the front-end counted it: a read it first tried to answer itself).
UNCOUNTED = 0x4000
# A method's number (plus UNCOUNTED or not) plus this: the payload starts with the caller's
# identity block (encode_identity).
IDENTIFIED = 0x2000
METHOD_MASK = IDENTIFIED - 1
assert len(LINK_METHODS) <= METHOD_MASK
# Front-end to core kinds beyond the method numbers.
HELLO = 0xFFFF
MESSAGE = 0xFFFE
HALF_CLOSE = 0xFFFD
CANCEL = 0xFFFC
CREDIT = 0xFFFB
SUBSCRIBE = 0xFFFA
READ_INDEX = 0xFFF9
STATS_REPLY = 0xFFF8
RENEW = 0xFFF7
# Core to front-end kind beyond the status codes.
STREAM_MESSAGE = 0xFF
FEED = 0xFE
STATS = 0xFD
# Messages a core may send on a stream before the front-end has passed any on to its client.
INITIAL_CREDIT = 64
CREDIT_COUNT = struct.Struct("<I")


# A renewal's result: the TTL (-1: the lease is not found) and a gRPC status code (0: none).
RENEWAL = struct.Struct("<qH")
LEASE_NOT_FOUND_TTL = -1


def encode_lease_ids(ids: list[int]) -> bytes:
    return struct.pack(f"<{len(ids)}q", *ids)


def decode_lease_ids(payload: bytes) -> tuple[int, ...]:
    if len(payload) % 8:
        raise ValueError("lease ids cut short")
    return struct.unpack(f"<{len(payload) // 8}q", payload)


def encode_renewals(results: list[tuple[int, int, str]]) -> bytes:
    """(ttl, status code, message) per lease; the messages of errors follow as a JSON list."""
    pack = RENEWAL.pack
    body = b"".join(pack(ttl, code) for ttl, code, _ in results)
    messages = [message for _, code, message in results if code]
    return body + (json.dumps(messages).encode() if messages else b"")


def decode_renewals(payload: bytes, count: int) -> list[tuple[int, int, str]]:
    size = RENEWAL.size
    if len(payload) < count * size:
        raise ValueError("renewals cut short")
    pairs = [RENEWAL.unpack_from(payload, i * size) for i in range(count)]
    messages = iter(json.loads(payload[count * size :]) if len(payload) > count * size else [])
    return [(ttl, code, next(messages) if code else "") for ttl, code in pairs]


def encode_request(call_id: int, method: int, payload: bytes, identity: bytes = b"") -> bytes:
    """One front-end record; ``identity`` (encode_identity, for a call's opening record) goes
    before the payload, with the IDENTIFIED bit in the kind."""
    if not identity:
        return REQUEST_HEADER.pack(call_id, method, len(payload)) + payload
    header = REQUEST_HEADER.pack(call_id, method | IDENTIFIED, len(identity) + len(payload))
    return b"".join((header, identity, payload))


# The identity block's fields (see the module's docstring).
TOKEN_FIELD = 1
AUTHORIZATION_FIELD = 2
CERT_CN_FIELD = 3
# The metadata names whose values cross the link: etcd's rpctypes TokenFieldNameGRPC and
# TokenFieldNameSwagger, the only ones etcd's auth reads (AuthInfoFromCtx).
AUTH_METADATA: dict[str, int] = {"token": TOKEN_FIELD, "authorization": AUTHORIZATION_FIELD}
_METADATA_NAMES: dict[int, str] = {field: name for name, field in AUTH_METADATA.items()}
IDENTITY_LENGTH = struct.Struct("<I")
IDENTITY_ENTRY = struct.Struct("<BI")


class Identity(NamedTuple):
    """A caller as the core sees it: its auth metadata and its certificate's common name."""

    metadata: tuple[tuple[str, str], ...]
    cert_cn: str | None


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")  # any str, whatever a context hands out


def encode_identity(metadata: Iterable[tuple[str, str | bytes]], cert_cn: str | None) -> bytes:
    """The identity block of a call: the values of ``metadata`` named in AUTH_METADATA, and the
    certificate's CN; b"" when there is neither (the call then crosses as it did before)."""
    pack = IDENTITY_ENTRY.pack
    parts: list[bytes] = []
    for name, value in metadata:
        field = AUTH_METADATA.get(name)
        if field is not None:
            data = value if isinstance(value, bytes) else _text(value)
            parts += (pack(field, len(data)), data)
    if cert_cn is not None:
        data = _text(cert_cn)
        parts += (pack(CERT_CN_FIELD, len(data)), data)
    if not parts:
        return b""
    body = b"".join(parts)
    return IDENTITY_LENGTH.pack(len(body)) + body


def split_identity(payload: bytes) -> tuple[Identity, bytes]:
    """(the caller, the request's bytes) of an IDENTIFIED record's payload; raises ValueError
    for a block that does not parse."""
    if len(payload) < IDENTITY_LENGTH.size:
        raise ValueError("identity block cut short")
    (length,) = IDENTITY_LENGTH.unpack_from(payload)
    end = IDENTITY_LENGTH.size + length
    if end > len(payload):
        raise ValueError("identity block longer than its record")
    metadata: list[tuple[str, str]] = []
    cert_cn: str | None = None
    pos = IDENTITY_LENGTH.size
    entry = IDENTITY_ENTRY.size
    while pos < end:
        if end - pos < entry:
            raise ValueError("identity entry cut short")
        field, size = IDENTITY_ENTRY.unpack_from(payload, pos)
        pos += entry
        if size > end - pos:
            raise ValueError("identity value longer than its block")
        try:
            value = payload[pos : pos + size].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise ValueError("identity value is not UTF-8") from None
        pos += size
        if field == CERT_CN_FIELD:
            if cert_cn is not None:
                raise ValueError("two certificate names in one identity")
            cert_cn = value
        elif field in _METADATA_NAMES:
            metadata.append((_METADATA_NAMES[field], value))
        else:
            raise ValueError(f"unknown identity field {field}")
    return Identity(tuple(metadata), cert_cn), payload[end:]


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
