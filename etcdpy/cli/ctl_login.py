"""etcdpyctl's log-in: ``--user``/``--password`` as etcdctl 3.4 reads them, the password prompt
(speakeasy's: the prompt on stdout, one line read from stdin without echo, a newline after),
Auth.Authenticate, and the token sent as the ``token`` metadata of every call, fetched again
once when the server answers that it is no longer good (clientv3's retry interceptor).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from etcdpy.cli.ctl_errors import EXIT_BAD_CONNECTION, EXIT_ERROR, CtlError, rpc_message
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

__all__ = [
    "Credentials",
    "TokenInterceptor",
    "UserFlags",
    "ask_password",
    "credentials_from_flags",
    "login",
]

TOKEN_KEY = "token"  # rpctypes.TokenFieldNameGRPC
AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
# The answers after which clientv3 fetches a new token and tries once more.
_STALE_TOKEN = frozenset({
    "etcdserver: invalid auth token",
    "etcdserver: revision of auth store is old",
    "etcdserver: user name is empty",
})  # fmt: skip


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    @property
    def usable(self) -> bool:
        # clientv3 authenticates only with both (an empty password means "no log-in").
        return bool(self.user and self.password)


@contextmanager
def _echo_off() -> Iterator[None]:
    if not sys.stdin.isatty():
        yield
        return
    import termios

    fd = sys.stdin.fileno()
    before = termios.tcgetattr(fd)
    quiet = list(before)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, before)


def ask_password(prompt: str) -> str:
    """speakeasy.Ask: ``prompt`` on stdout, a line from stdin (not echoed on a terminal),
    surrounding blanks dropped, then a newline on stdout."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    try:
        with _echo_off():
            line = sys.stdin.readline() if sys.stdin is not None else ""
    finally:
        sys.stdout.write("\n")
        sys.stdout.flush()
    return line.strip()


def credentials_from_flags(user: str, password: str) -> Credentials | None:
    """etcdctl's authCfgFromCmd: ``--user name:password``, or ``--user name --password p``,
    or ``--user name`` and the prompt."""
    if not user:
        return None
    if password:
        return Credentials(user, password)
    name, sep, given = user.partition(":")
    if sep:
        return Credentials(name, given)
    try:
        return Credentials(user, ask_password("Password: "))
    except OSError as err:
        raise CtlError(str(err), EXIT_ERROR) from None


@dataclass
class UserFlags:
    """``--user`` and ``--password`` as given; the prompt, if any, comes when the client first
    dials (after a command's own prompts, as in etcdctl) and only once."""

    user: str = ""
    password: str = ""
    _resolved: list[Credentials | None] = field(default_factory=list, repr=False)

    def credentials(self) -> Credentials | None:
        if not self._resolved:
            self._resolved.append(credentials_from_flags(self.user, self.password))
        return self._resolved[0]


def authenticate(channel: grpc.Channel, creds: Credentials, timeout: float) -> str | None:
    """A token, or None when the server has auth off (clientv3 then calls without one).
    A refused log-in is a connection failure for etcdctl (exit 2)."""
    stub = rpc_pb2_grpc.AuthStub(channel)
    request = rpc_pb2.AuthenticateRequest(name=creds.user, password=creds.password)
    try:
        response = stub.Authenticate(request, timeout=timeout)
    except grpc.RpcError as err:
        message = rpc_message(err)
        if message == AUTH_NOT_ENABLED:
            return None
        raise CtlError(message, EXIT_BAD_CONNECTION) from None
    token: str = response.token
    return token


_Metadata = tuple[tuple[str, str | bytes], ...]


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: _Metadata) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


if TYPE_CHECKING:  # grpc-stubs makes the interceptors generic; grpc's classes are not
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.StreamUnaryClientInterceptor[Any, Any]
    _StreamStream = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor


class TokenInterceptor(_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream):
    """Adds the token to every call; a unary call refused for a stale token is retried once
    with a new one (streams carry the token they started with, as most of clientv3's do)."""

    def __init__(self, token: str, refresh: Callable[[], str | None]) -> None:
        self._token = token
        self._refresh = refresh
        self._lock = threading.Lock()

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = tuple((k, v) for k, v in (details.metadata or ()) if k != TOKEN_KEY)
        with self._lock:
            token = self._token
        if token:
            metadata += ((TOKEN_KEY, token),)
        return _CallDetails(details, metadata)

    def _renew(self) -> None:
        token = self._refresh()
        with self._lock:
            self._token = token or ""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(self._details(details), request)
        failure = outcome.exception() if hasattr(outcome, "exception") else None
        if isinstance(failure, grpc.RpcError) and rpc_message(failure) in _STALE_TOKEN:
            self._renew()
            outcome = continuation(self._details(details), request)
        return outcome

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def login(channel: grpc.Channel, creds: Credentials, timeout: float) -> grpc.Channel:
    """``channel`` with the token on every call (unchanged when auth is off on the server)."""
    token = authenticate(channel, creds, timeout)
    if token is None:
        return channel

    def refresh() -> str | None:
        try:
            return authenticate(channel, creds, timeout)
        except CtlError as err:  # the call fails with it, as clientv3's (exit 1)
            raise CtlError(str(err), EXIT_ERROR) from None

    return grpc.intercept_channel(channel, TokenInterceptor(token, refresh))
