"""etcdpyctl's connection: one gRPC channel to the first endpoint that answers, timeouts as
etcdctl applies them, and the error every command raises (``CtlError``).

etcdctl's exit codes are kept, so scripts written for it read ours the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

__all__ = [
    "EXIT_BAD_ARGS",
    "EXIT_BAD_CONNECTION",
    "EXIT_BAD_FEATURE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "Client",
    "CtlError",
    "dial",
    "rpc_message",
]

# etcdctl's exit codes (ctlv3/command/error.go).
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3
EXIT_BAD_FEATURE = 4  # a valid flag with a value that is not supported
EXIT_INTERRUPTED = 5
EXIT_BAD_ARGS = 128


class CtlError(Exception):
    """Printed as ``Error: <message>`` on stderr; the process exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def rpc_message(err: grpc.RpcError) -> str:
    """What etcdctl prints for a failed call: the server's text (etcd's error strings)."""
    code = err.code() if hasattr(err, "code") else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "context deadline exceeded"
    details = err.details() if hasattr(err, "details") else None
    return str(details or err)


def grpc_target(endpoint: str) -> str:
    """``http://host:port`` or ``host:port`` -> ``host:port`` (TLS is not spoken yet)."""
    if endpoint.startswith("https://"):
        raise CtlError("https endpoints are not supported yet by etcdpyctl", EXIT_BAD_ARGS)
    return endpoint.removeprefix("http://")


def dial(endpoint: str, timeout: float) -> grpc.Channel | None:
    """A channel to ``endpoint`` once connected, or None after ``timeout`` seconds."""
    channel = grpc.insecure_channel(grpc_target(endpoint))
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        return None
    return channel


@dataclass
class Client:
    """One channel to the first of ``endpoints`` that answers, dialled on first use.

    ``command_timeout`` bounds each unary call (not the dial), as etcdctl's
    --command-timeout does; ``command_timeout_set`` says the user chose it, which matters
    for the streams (snapshot save) that etcdctl leaves unbounded by default.
    """

    endpoints: list[str]
    dial_timeout: float = 2.0
    command_timeout: float = 5.0
    command_timeout_set: bool = False
    endpoint: str = ""  # the endpoint the channel is connected to
    _channel: grpc.Channel | None = field(default=None, repr=False)

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel, self.endpoint = self._dial_any()
        return self._channel

    def _dial_any(self) -> tuple[grpc.Channel, str]:
        if not self.endpoints:
            raise CtlError("no endpoints given (--endpoints or ETCDCTL_ENDPOINTS)", EXIT_BAD_ARGS)
        for endpoint in self.endpoints:
            channel = dial(endpoint, self.dial_timeout)
            if channel is not None:
                return channel, endpoint
        raise CtlError("context deadline exceeded")

    def call(self, method: Callable[..., Any], request: Message) -> Any:
        """A unary call bounded by the command timeout; gRPC errors become CtlError."""
        try:
            return method(request, timeout=self.command_timeout)
        except grpc.RpcError as err:
            raise CtlError(rpc_message(err)) from None

    def stream_timeout(self) -> float | None:
        """The bound for a long stream: none unless --command-timeout was given."""
        return self.command_timeout if self.command_timeout_set else None

    def for_endpoint(self, endpoint: str) -> Client:
        """A client of this one endpoint with the same timeouts (per-endpoint commands)."""
        return Client([endpoint], self.dial_timeout, self.command_timeout, self.command_timeout_set)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
