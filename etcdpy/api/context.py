"""What a handler may ask of its call: etcdpy's own context, not grpc's.

Four callers run handlers, each with a context of its own that satisfies ``CallContext``:
etcdpy.h2grpc (the client port), etcdpy.corelink.core (calls a front-end hands to the core),
etcdpy.clientport.gateway (the JSON gateway, in process) and grpc.aio's ``ServicerContext``
(ETCDPY_CLIENT_FRONT=off). A handler that needs more than this Protocol does not belong in api/.
"""

from __future__ import annotations

from typing import Any, NoReturn, Protocol

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]


class CallAborted(Exception):
    """Raised by ``abort`` of etcdpy's contexts, as grpc.aio raises its AbortError: the call
    ends with the status the context holds."""


class CallContext(Protocol):
    def peer(self) -> str:
        """Who called: ``ipv4:127.0.0.1:5555``, ``unix:core-link``, ..."""
        ...

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline; None: no deadline."""
        ...

    def invocation_metadata(self) -> Any:
        """The caller's metadata, as (name, value) pairs."""
        ...

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        """Ends the call with ``code`` and ``details``; always raises."""
        ...

    async def write(self, message: Any) -> None:
        """One message of a streaming response."""
        ...

    def code(self) -> Any:
        """The status ``abort`` set (a grpc.StatusCode), or None."""
        ...

    def details(self) -> Any:
        """The message ``abort`` set."""
        ...
