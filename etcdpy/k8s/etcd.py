"""The object layer's etcd client: the few KV, lease and watch calls a kube-apiserver's storage
makes, over etcdpy's generated stubs, in a sync (grpcio) and an asyncio (grpc.aio) flavour.

gRPC failures become the API server's errors (``etcdpy.k8s.errors``) in one place
(``map_rpc_error``): a compacted revision is ``Gone``, etcd's "request is too large" is
``RequestEntityTooLarge``, an unreachable or slow member is ``ServiceUnavailable``, anything else
``InternalError`` with etcd's message. With a user, the client authenticates, sends the token as
etcd's ``token`` metadata and authenticates once more when etcd answers "invalid auth token".
Reads (Range) move on to the next endpoint when one is unreachable; writes are never retried
(a write that timed out may have been applied).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import grpc
import grpc.aio

from etcdpy.k8s import errors
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc as stubs
from etcdpy.tls.grpc_credentials import channel_credentials

T = TypeVar("T")
_AIO_EOF: Any = getattr(grpc.aio, "EOF", None)  # grpc-stubs does not declare it

COMPACTED = "mvcc: required revision has been compacted"
TOO_LARGE = "etcdserver: request is too large"
INVALID_TOKEN = "invalid auth token"
AUTH_NOT_ENABLED = "authentication is not enabled"
UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class Connection:
    """Where etcd is and how to reach it, under etcdctl's flag names."""

    endpoints: tuple[str, ...]
    cacert: str = ""
    cert: str = ""
    key: str = ""
    user: str = ""
    password: str = ""
    timeout: float = 10.0

    @classmethod
    def of(cls, endpoints: str | Sequence[str], **kwargs: Any) -> Connection:
        """``"a:1,b:2"`` or a list; ``user`` may be ``"user:password"`` as etcdctl's --user."""
        listed = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
        cleaned = tuple(e.strip() for e in listed if e.strip())
        if not cleaned:
            raise errors.BadRequest("no etcd endpoint given")
        connection = cls(cleaned, **kwargs)
        if ":" in connection.user and not connection.password:
            user, _, password = connection.user.partition(":")
            connection = replace(connection, user=user, password=password)
        return connection

    def target(self, index: int) -> str:
        return self.endpoints[index].split("://", 1)[-1].rstrip("/")


def map_rpc_error(err: grpc.RpcError) -> errors.StatusError:
    """One gRPC failure as the API server's error (etcd's own message is kept)."""
    details = str(err.details() if hasattr(err, "details") else err) or "etcd call failed"
    code = err.code() if hasattr(err, "code") else None
    if COMPACTED in details:
        return errors.Gone(details)
    if TOO_LARGE in details or code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # etcd's own limit (--max-request-bytes), or gRPC's (that limit plus 512 KiB)
        return errors.RequestEntityTooLarge(details)
    if code in UNAVAILABLE:
        return errors.ServiceUnavailable(details)
    return errors.InternalError(details)


def _is_invalid_token(err: grpc.RpcError) -> bool:
    return INVALID_TOKEN in str(err.details() if hasattr(err, "details") else err)


@dataclass
class _Auth:
    """The token (thread-safe): fetched at first use, refetched once on "invalid auth token"."""

    token: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("token", self.token),) if self.token else ()


def _watch_create(
    key: bytes, range_end: bytes, start_revision: int, progress_notify: bool, prev_kv: bool
) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=key,
            range_end=range_end,
            start_revision=start_revision,
            progress_notify=progress_notify,
            prev_kv=prev_kv,
        )
    )


def _check_watch_response(response: rpc_pb2.WatchResponse) -> None:
    """A compacted start revision ends the watch with etcd's answer: ``Gone``."""
    if response.compact_revision:
        raise errors.Gone(
            f"etcdserver: {COMPACTED}",
            details={"compactRevision": response.compact_revision},
        )
    if response.canceled:
        raise errors.InternalError(response.cancel_reason or "etcd canceled the watch")


class EtcdWatch:
    """One etcd watch: iterate for ``WatchResponse``s with events or progress (the ``created``
    answer is consumed); ``cancel()`` from any thread ends the iteration."""

    def __init__(self, client: EtcdClient, create: rpc_pb2.WatchRequest) -> None:
        self._requests: queue.SimpleQueue[rpc_pb2.WatchRequest | None] = queue.SimpleQueue()
        self._requests.put(create)
        self._canceled = threading.Event()
        self._call: Any = client._stub(client._index).Watch(
            self._request_iter(), metadata=client._auth.metadata()
        )
        self._started = False

    def _request_iter(self) -> Iterator[rpc_pb2.WatchRequest]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def __iter__(self) -> Iterator[rpc_pb2.WatchResponse]:
        return self

    def __next__(self) -> rpc_pb2.WatchResponse:
        while True:
            if self._canceled.is_set():
                raise StopIteration
            try:
                response: rpc_pb2.WatchResponse = next(self._call)
            except StopIteration:
                raise
            except grpc.RpcError as err:
                if self._canceled.is_set() or err.code() == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                raise map_rpc_error(err) from None
            _check_watch_response(response)
            if response.created and not self._started:
                self._started = True
                if not response.events:
                    continue
            return response

    def cancel(self) -> None:
        self._canceled.set()
        self._requests.put(None)
        self._call.cancel()

    def request_progress(self) -> None:
        self._requests.put(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def __enter__(self) -> EtcdWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class EtcdClient:
    """A synchronous, thread-safe client of an etcd cluster (grpcio)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._channels: dict[int, tuple[grpc.Channel, _Stubs]] = {}
        self._index = 0
        self._lock = threading.Lock()
        self._auth = _Auth()
        self._authenticated = not connection.user

    @classmethod
    def connect(cls, endpoints: str | Sequence[str], **kwargs: Any) -> EtcdClient:
        return cls(Connection.of(endpoints, **kwargs))

    def _stub(self, index: int) -> _Stubs:
        with self._lock:
            opened = self._channels.get(index)
            if opened is None:
                target = self.connection.target(index)
                creds = channel_credentials(
                    self.connection.cacert,
                    self.connection.cert,
                    self.connection.key,
                    (self.connection.endpoints[index],),
                )
                channel = (
                    grpc.insecure_channel(target)
                    if creds is None
                    else grpc.secure_channel(target, creds)
                )
                opened = (channel, _Stubs(channel))
                self._channels[index] = opened
            return opened[1]

    def _authenticate(self, stale: str) -> None:
        with self._auth.lock:
            if self._auth.token and self._auth.token != stale:
                return  # another thread already refreshed it
            try:
                answer = self._stub(self._index).auth.Authenticate(
                    rpc_pb2.AuthenticateRequest(
                        name=self.connection.user, password=self.connection.password
                    ),
                    timeout=self.connection.timeout,
                )
            except grpc.RpcError as err:
                if AUTH_NOT_ENABLED in str(err.details()):
                    self._auth.token = ""
                    return
                raise map_rpc_error(err) from None
            self._auth.token = answer.token

    def _call(self, method: Callable[[Any], Any], request: Any, *, read: bool = False) -> Any:
        if not self._authenticated:
            self._authenticate("")
            self._authenticated = True
        tries = len(self.connection.endpoints) if read else 1
        reauthenticated = False
        while True:
            index = self._index
            token = self._auth.token
            try:
                return method(self._stub(index))(
                    request, timeout=self.connection.timeout, metadata=self._auth.metadata()
                )
            except grpc.RpcError as err:
                if _is_invalid_token(err) and self.connection.user and not reauthenticated:
                    reauthenticated = True
                    self._authenticate(token)
                    continue
                if err.code() in UNAVAILABLE and len(self.connection.endpoints) > 1:
                    with self._lock:
                        if self._index == index:
                            self._index = (index + 1) % len(self.connection.endpoints)
                    tries -= 1
                    if tries > 0:
                        continue
                raise map_rpc_error(err) from None

    def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> rpc_pb2.RangeResponse:
        request = rpc_pb2.RangeRequest(
            key=key,
            range_end=range_end,
            limit=limit,
            revision=revision,
            keys_only=keys_only,
            count_only=count_only,
        )
        return self.execute(request)  # type: ignore[no-any-return]

    def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
    ) -> rpc_pb2.TxnResponse:
        request = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)
        return self.execute(request)  # type: ignore[no-any-return]

    def put(self, key: bytes, value: bytes, *, lease: int = 0) -> rpc_pb2.PutResponse:
        return self.execute(rpc_pb2.PutRequest(key=key, value=value, lease=lease))  # type: ignore[no-any-return]

    def delete(self, key: bytes, range_end: bytes = b"") -> rpc_pb2.DeleteRangeResponse:
        request = rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end)
        return self.execute(request)  # type: ignore[no-any-return]

    def lease_grant(self, ttl: int) -> int:
        answer = self.execute(rpc_pb2.LeaseGrantRequest(TTL=ttl))
        return int(answer.ID)

    def lease_keepalive_once(self, lease_id: int) -> int:
        if not self._authenticated:
            self._authenticate("")
            self._authenticated = True
        request = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)
        try:
            answers = self._stub(self._index).lease.LeaseKeepAlive(
                iter((request,)), timeout=self.connection.timeout, metadata=self._auth.metadata()
            )
            for answer in answers:
                return int(answer.TTL) if answer.TTL > 0 else 0
        except grpc.RpcError as err:
            raise map_rpc_error(err) from None
        return 0

    def lease_revoke(self, lease_id: int) -> None:
        self.execute(rpc_pb2.LeaseRevokeRequest(ID=lease_id))

    def execute(self, request: Any) -> Any:
        """One request of ``ops`` (Range, Txn, Put, DeleteRange, LeaseGrant, LeaseRevoke,
        Compaction)."""
        method, read = _METHODS[type(request)]
        return self._call(method, request, read=read)

    def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        progress_notify: bool = False,
        prev_kv: bool = False,
    ) -> EtcdWatch:
        if not self._authenticated:
            self._authenticate("")
            self._authenticated = True
        create = _watch_create(key, range_end, start_revision, progress_notify, prev_kv)
        return EtcdWatch(self, create)

    def close(self) -> None:
        with self._lock:
            channels = [channel for channel, _ in self._channels.values()]
            self._channels.clear()
        for channel in channels:
            channel.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Stubs:
    """The services of one channel."""

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None:
        self.kv = stubs.KVStub(channel)
        self.lease = stubs.LeaseStub(channel)
        self.watch = stubs.WatchStub(channel)
        self.auth = stubs.AuthStub(channel)

    @property
    def Watch(self) -> Any:  # the gRPC method's name
        return self.watch.Watch


_METHODS: dict[type, tuple[Callable[[Any], Any], bool]] = {
    rpc_pb2.RangeRequest: (lambda s: s.kv.Range, True),
    rpc_pb2.TxnRequest: (lambda s: s.kv.Txn, False),
    rpc_pb2.PutRequest: (lambda s: s.kv.Put, False),
    rpc_pb2.DeleteRangeRequest: (lambda s: s.kv.DeleteRange, False),
    rpc_pb2.LeaseGrantRequest: (lambda s: s.lease.LeaseGrant, False),
    rpc_pb2.LeaseRevokeRequest: (lambda s: s.lease.LeaseRevoke, False),
    rpc_pb2.CompactionRequest: (lambda s: s.kv.Compact, False),
}


class AsyncEtcdWatch:
    """An etcd watch on asyncio: ``async for`` the responses; ``await cancel()`` ends it."""

    def __init__(self, call: Any, create: rpc_pb2.WatchRequest) -> None:
        self._call = call
        self._create = create
        self._created = False
        self._canceled = False

    async def start(self) -> AsyncEtcdWatch:
        try:
            await self._call.write(self._create)
        except grpc.RpcError as err:
            raise map_rpc_error(err) from None
        return self

    def __aiter__(self) -> AsyncIterator[rpc_pb2.WatchResponse]:
        return self

    async def __anext__(self) -> rpc_pb2.WatchResponse:
        while True:
            if self._canceled:
                raise StopAsyncIteration
            try:
                response = await self._call.read()
            except asyncio.CancelledError:
                if self._canceled:
                    raise StopAsyncIteration from None
                raise
            except grpc.RpcError as err:
                if self._canceled or err.code() == grpc.StatusCode.CANCELLED:
                    raise StopAsyncIteration from None
                raise map_rpc_error(err) from None
            if response is _AIO_EOF:
                raise StopAsyncIteration
            _check_watch_response(response)
            if response.created and not self._created:
                self._created = True
                if not response.events:
                    continue
            return response  # type: ignore[no-any-return]

    async def cancel(self) -> None:
        self._canceled = True
        self._call.cancel()

    async def request_progress(self) -> None:
        request = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
        await self._call.write(request)


class AsyncEtcdClient:
    """The same calls as ``EtcdClient`` on grpc.aio; create it inside the running loop."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._channels: dict[int, tuple[grpc.aio.Channel, _Stubs]] = {}
        self._index = 0
        self._token = ""
        self._authenticated = not connection.user
        self._auth_lock = asyncio.Lock()

    @classmethod
    def connect(cls, endpoints: str | Sequence[str], **kwargs: Any) -> AsyncEtcdClient:
        return cls(Connection.of(endpoints, **kwargs))

    def _stub(self, index: int) -> _Stubs:
        opened = self._channels.get(index)
        if opened is None:
            target = self.connection.target(index)
            creds = channel_credentials(
                self.connection.cacert,
                self.connection.cert,
                self.connection.key,
                (self.connection.endpoints[index],),
            )
            channel = (
                grpc.aio.insecure_channel(target)
                if creds is None
                else grpc.aio.secure_channel(target, creds)
            )
            opened = (channel, _Stubs(channel))
            self._channels[index] = opened
        return opened[1]

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("token", self._token),) if self._token else ()

    async def _authenticate(self, stale: str) -> None:
        async with self._auth_lock:
            if self._token and self._token != stale:
                return
            try:
                answer = await self._stub(self._index).auth.Authenticate(
                    rpc_pb2.AuthenticateRequest(
                        name=self.connection.user, password=self.connection.password
                    ),
                    timeout=self.connection.timeout,
                )
            except grpc.RpcError as err:
                if AUTH_NOT_ENABLED in str(err.details()):
                    self._token = ""
                    return
                raise map_rpc_error(err) from None
            self._token = answer.token
            self._authenticated = True

    async def execute(self, request: Any) -> Any:
        """One request of ``ops``, as ``EtcdClient.execute``."""
        if not self._authenticated:
            await self._authenticate("")
        method, read = _METHODS[type(request)]
        tries = len(self.connection.endpoints) if read else 1
        reauthenticated = False
        while True:
            index = self._index
            token = self._token
            try:
                call: Awaitable[Any] = method(self._stub(index))(
                    request, timeout=self.connection.timeout, metadata=self._metadata()
                )
                return await call
            except grpc.RpcError as err:
                if _is_invalid_token(err) and self.connection.user and not reauthenticated:
                    reauthenticated = True
                    await self._authenticate(token)
                    continue
                if err.code() in UNAVAILABLE and len(self.connection.endpoints) > 1:
                    if self._index == index:
                        self._index = (index + 1) % len(self.connection.endpoints)
                    tries -= 1
                    if tries > 0:
                        continue
                raise map_rpc_error(err) from None

    async def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> rpc_pb2.RangeResponse:
        request = rpc_pb2.RangeRequest(
            key=key,
            range_end=range_end,
            limit=limit,
            revision=revision,
            keys_only=keys_only,
            count_only=count_only,
        )
        return await self.execute(request)  # type: ignore[no-any-return]

    async def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
    ) -> rpc_pb2.TxnResponse:
        request = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)
        return await self.execute(request)  # type: ignore[no-any-return]

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> rpc_pb2.PutResponse:
        return await self.execute(rpc_pb2.PutRequest(key=key, value=value, lease=lease))  # type: ignore[no-any-return]

    async def delete(self, key: bytes, range_end: bytes = b"") -> rpc_pb2.DeleteRangeResponse:
        request = rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end)
        return await self.execute(request)  # type: ignore[no-any-return]

    async def lease_grant(self, ttl: int) -> int:
        answer = await self.execute(rpc_pb2.LeaseGrantRequest(TTL=ttl))
        return int(answer.ID)

    async def lease_keepalive_once(self, lease_id: int) -> int:
        if not self._authenticated:
            await self._authenticate("")
        call = self._stub(self._index).lease.LeaseKeepAlive(
            timeout=self.connection.timeout, metadata=self._metadata()
        )
        try:
            await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
            answer = await call.read()
        except grpc.RpcError as err:
            raise map_rpc_error(err) from None
        finally:
            call.cancel()
        if answer is _AIO_EOF:
            return 0
        return int(answer.TTL) if answer.TTL > 0 else 0

    async def lease_revoke(self, lease_id: int) -> None:
        await self.execute(rpc_pb2.LeaseRevokeRequest(ID=lease_id))

    async def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        progress_notify: bool = False,
        prev_kv: bool = False,
    ) -> AsyncEtcdWatch:
        if not self._authenticated:
            await self._authenticate("")
        call = self._stub(self._index).watch.Watch(metadata=self._metadata())
        create = _watch_create(key, range_end, start_revision, progress_notify, prev_kv)
        return await AsyncEtcdWatch(call, create).start()

    async def close(self) -> None:
        channels = [channel for channel, _ in self._channels.values()]
        self._channels.clear()
        for channel in channels:
            await channel.close(None)

    async def __aenter__(self) -> AsyncEtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
