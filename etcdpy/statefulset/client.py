"""A small synchronous client of one member's gRPC API (plain or TLS, with etcd's token auth
when a user is given), for the ``etcdpy k8s`` commands. Errors become ``ClientError`` with the
server's message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc as stubs
from etcdpy.tls.grpc_credentials import channel_credentials

AUTH_NOT_ENABLED = "authentication is not enabled"


class ClientError(Exception):
    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Security:
    """TLS files ("" none) and the user to log in as ("" none)."""

    cacert: str = ""
    cert: str = ""
    key: str = ""
    user: str = ""
    password: str = ""

    def credentials(self, endpoint: str) -> grpc.ChannelCredentials | None:
        return channel_credentials(self.cacert, self.cert, self.key, (endpoint,))


def _target(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1].rstrip("/")


def _error(err: grpc.RpcError) -> ClientError:
    details = err.details() if hasattr(err, "details") else str(err)
    code = err.code() if hasattr(err, "code") else None
    return ClientError(str(details or code), code)


class Member:
    """A connection to one endpoint. ``connect`` dials (bounded) and logs in when configured."""

    def __init__(self, endpoint: str, security: Security, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._security = security
        credentials = security.credentials(endpoint)
        target = _target(endpoint)
        self._channel = (
            grpc.insecure_channel(target)
            if credentials is None
            else grpc.secure_channel(target, credentials)
        )
        self._metadata: tuple[tuple[str, str], ...] = ()
        self.kv = stubs.KVStub(self._channel)
        self.cluster = stubs.ClusterStub(self._channel)
        self.maintenance = stubs.MaintenanceStub(self._channel)
        self.auth = stubs.AuthStub(self._channel)

    def connect(self, dial_timeout: float) -> Member:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=dial_timeout)
        except grpc.FutureTimeoutError:
            self.close()
            raise ClientError(f"{self.endpoint}: no connection within {dial_timeout}s") from None
        if self._security.user:
            self.login(self._security.user, self._security.password)
        return self

    def login(self, user: str, password: str) -> bool:
        """Logs in; False (and no token) when the cluster's auth is not enabled."""
        try:
            answer = self.auth.Authenticate(
                pb.AuthenticateRequest(name=user, password=password), timeout=self.timeout
            )
        except grpc.RpcError as err:
            error = _error(err)
            if AUTH_NOT_ENABLED in str(error):
                self._metadata = ()
                return False
            raise error from None
        self._metadata = (("token", answer.token),)
        return True

    def call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise _error(err) from None

    def stream(self, method: Any, request: Any, timeout: float) -> Iterator[Any]:
        try:
            yield from method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise _error(err) from None

    def member_list(self) -> pb.MemberListResponse:
        return self.call(self.cluster.MemberList, pb.MemberListRequest())  # type: ignore[no-any-return]

    def status(self) -> pb.StatusResponse:
        return self.call(self.maintenance.Status, pb.StatusRequest())  # type: ignore[no-any-return]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Member:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(endpoint: str, security: Security, dial_timeout: float, timeout: float) -> Member:
    return Member(endpoint, security, timeout).connect(dial_timeout)


def first_answering(
    endpoints: list[str], security: Security, dial_timeout: float, timeout: float
) -> Member:
    """A connection to the first endpoint that answers Status, else ClientError."""
    problems = []
    for endpoint in endpoints:
        try:
            member = connect(endpoint, security, dial_timeout, timeout)
        except ClientError as err:
            problems.append(str(err))
            continue
        try:
            member.status()
        except ClientError as err:
            problems.append(f"{endpoint}: {err}")
            member.close()
            continue
        return member
    raise ClientError("no endpoint answered: " + "; ".join(problems))
