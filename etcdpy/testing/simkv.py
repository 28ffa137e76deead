"""The replicated application of the simulator: a small map of integer registers.

A write is one log entry: ``(client, request id, key, value)``. Every client has at most one
request outstanding and numbers its requests upwards, so the state machine remembers the highest
request id it applied per client and applies a retried request at most once; a client may then
resend the same request through another node without risking a double write.

The state (registers plus that table) encodes to bytes deterministically: it is the snapshot
data, the durable application record, and what the checkers hash.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

_WRITE = struct.Struct(">IIBQ")  # client, request id, key, value
_COUNT = struct.Struct(">I")
_PAIR = struct.Struct(">QQ")


@dataclass(frozen=True, slots=True)
class WriteOp:
    client: int
    request: int
    key: int
    value: int

    def encode(self) -> bytes:
        return _WRITE.pack(self.client, self.request, self.key, self.value)

    @classmethod
    def decode(cls, data: bytes) -> WriteOp:
        client, request, key, value = _WRITE.unpack(data)
        return cls(client, request, key, value)


def _encode_map(items: dict[int, int]) -> bytes:
    parts = [_COUNT.pack(len(items))]
    parts.extend(_PAIR.pack(k, items[k]) for k in sorted(items))
    return b"".join(parts)


def _decode_map(data: bytes, offset: int) -> tuple[dict[int, int], int]:
    (count,) = _COUNT.unpack_from(data, offset)
    offset += _COUNT.size
    out: dict[int, int] = {}
    for _ in range(count):
        k, v = _PAIR.unpack_from(data, offset)
        offset += _PAIR.size
        out[k] = v
    return out, offset


class KVStateMachine:
    def __init__(self) -> None:
        self.registers: dict[int, int] = {}
        self.last_request: dict[int, int] = {}

    def apply(self, data: bytes) -> WriteOp | None:
        """Apply one encoded write; None when it is a duplicate of an applied request."""
        op = WriteOp.decode(data)
        if self.last_request.get(op.client, 0) >= op.request:
            return None
        self.last_request[op.client] = op.request
        self.registers[op.key] = op.value
        return op

    def read(self, key: int) -> int | None:
        return self.registers.get(key)

    def encode(self) -> bytes:
        return _encode_map(self.registers) + _encode_map(self.last_request)

    @classmethod
    def decode(cls, data: bytes) -> KVStateMachine:
        sm = cls()
        if data:
            sm.registers, offset = _decode_map(data, 0)
            sm.last_request, _ = _decode_map(data, offset)
        return sm

    def digest(self) -> bytes:
        return hashlib.blake2b(self.encode(), digest_size=16).digest()
