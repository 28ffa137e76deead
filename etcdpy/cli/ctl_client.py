"""etcdpyctl's connection: one gRPC channel to the first endpoint that answers (plain or TLS,
ctl_security), logged in when --user is given (ctl_login), timeouts as etcdctl applies them.
The error every command raises (``CtlError``) and etcdctl's exit codes are in ctl_errors and
re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from etcdpy.cli.ctl_errors import (
    EXIT_BAD_ARGS,
    EXIT_BAD_CONNECTION,
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    CtlError,
    rpc_message,
)
from etcdpy.cli.ctl_login import UserFlags, login
from etcdpy.cli.ctl_security import TlsSettings, parse_endpoint

__all__ = [
    "EXIT_BAD_ARGS",
    "EXIT_BAD_CONNECTION",
    "EXIT_BAD_FEATURE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_INPUT",
    "Client",
    "CtlError",
    "dial",
    "rpc_message",
]


def dial(endpoint: str, timeout: float, tls: TlsSettings | None = None) -> grpc.Channel | None:
    """A channel to ``endpoint`` once connected, or None after ``timeout`` seconds. The
    endpoint's scheme and the TLS flags choose plain text or TLS (etcdctl's rules)."""
    parsed = parse_endpoint(endpoint)
    secure = (tls or TlsSettings()).credentials(parsed, timeout)
    if secure is None:
        channel = grpc.insecure_channel(parsed.target)
    else:
        credentials, options = secure
        channel = grpc.secure_channel(parsed.target, credentials, options=options)
    if not _connected(channel, timeout):
        channel.close()
        return None
    return channel


# grpc's connectivity state READY (cygrpc's ConnectivityState.ready).
_READY = 2


def _connected(channel: grpc.Channel, timeout: float) -> bool:
    """Waits until ``channel`` is connected, as etcdctl's blocking dial does.

    ``grpc.channel_ready_future`` polls from a thread whose pending 0.2 s watch ``close()``
    then waits for: every etcdpyctl command paid 0.2 s at exit (etcdctl's put takes 0.02 s).
    Watching the state from this thread leaves nothing pending. The core channel is a private
    attribute of grpc's channel: where it is missing, the public future is used.
    """
    core = getattr(channel, "_channel", None)
    if core is None or not hasattr(core, "watch_connectivity_state"):
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True
    deadline = time.time() + timeout
    state = core.check_connectivity_state(True)
    while state != _READY:
        if time.time() >= deadline:
            return False
        core.watch_connectivity_state(state, deadline)
        state = core.check_connectivity_state(True)
    return True


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
    tls: TlsSettings = field(default_factory=TlsSettings)
    user: UserFlags = field(default_factory=UserFlags)  # --user: log in after the dial
    endpoint: str = ""  # the endpoint the channel is connected to
    _channel: grpc.Channel | None = field(default=None, repr=False)

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel, self.endpoint = self._dial_any()
        return self._channel

    def _dial_any(self) -> tuple[grpc.Channel, str]:
        if not self.endpoints:
            raise CtlError("no endpoints given (--endpoints or ETCDCTL_ENDPOINTS)", EXIT_BAD_ARGS)
        credentials = self.user.credentials()  # etcdctl prompts before it reads TLS files
        self.tls.check()
        for endpoint in self.endpoints:
            channel = dial(endpoint, self.dial_timeout, self.tls)
            if channel is None:
                continue
            if credentials is not None and credentials.usable:
                try:
                    channel = login(channel, credentials, self.dial_timeout)
                except BaseException:
                    channel.close()
                    raise
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
        return Client([endpoint], self.dial_timeout, self.command_timeout, self.command_timeout_set,
                      self.tls, self.user)  # fmt: skip

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
