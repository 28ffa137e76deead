"""``RequestContext``: the context a handler gets, etcdpy's one implementation of the
``etcdpy.call.CallContext`` Protocol (the part of grpc.aio's ``ServicerContext`` etcdpy's services
use). h2grpc's calls, the core link and the JSON gateway all hand it to ``invoke``."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc

from etcdpy.call import CallAborted, Metadata

# Headers of the protocol itself, not the caller's metadata.
_TRANSPORT_HEADERS = frozenset(
    {"te", "content-type", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"}
)


def metadata_of(headers: list[tuple[bytes, bytes]]) -> Metadata:
    """The caller's metadata: no pseudo headers, ``-bin`` values base64-decoded."""
    items: list[tuple[str, str | bytes]] = []
    for raw_name, value in headers:
        name = raw_name.decode("latin-1")
        if name.startswith(":") or name in _TRANSPORT_HEADERS:
            continue
        if name.endswith("-bin"):
            padded = value + b"=" * (-len(value) % 4)
            items.append((name, base64.b64decode(padded)))
        else:
            items.append((name, value.decode("latin-1")))
    return tuple(items)


class RequestContext:
    __slots__ = (
        "_cert_cn",
        "_code",
        "_deadline",
        "_details",
        "_headers",
        "_metadata",
        "_peer",
        "_write",
    )

    def __init__(
        self,
        headers: list[tuple[bytes, bytes]],
        peer: str,
        deadline: float | None,
        write: Callable[[Any], Awaitable[None]] | None,
        cert_cn: str | None = None,
    ) -> None:
        self._headers = headers
        self._cert_cn = cert_cn
        self._metadata: Metadata | None = None
        self._peer = peer
        self._deadline = deadline
        self._write = write
        self._code: grpc.StatusCode | None = None
        self._details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> NoReturn:
        self._code = code
        self._details = details
        raise CallAborted(details)

    async def write(self, message: Any) -> None:
        if self._write is None:
            raise RuntimeError("write() on a call without a response stream")
        await self._write(message)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def invocation_metadata(self) -> Metadata:
        if self._metadata is None:
            self._metadata = metadata_of(self._headers)
        return self._metadata

    def sent_any_of(self, names: frozenset[bytes]) -> bool:
        """Whether the caller sent metadata under any of these names: a look at the raw headers,
        cheaper than ``invocation_metadata()`` when the answer is no (the core link's common
        case: no auth token)."""
        for name, _ in self._headers:  # noqa: SIM110 - a loop takes half the time of any()
            if name in names:
                return True
        return False

    def peer(self) -> str:
        return self._peer

    def client_cert_cn(self) -> str | None:
        return self._cert_cn

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())
