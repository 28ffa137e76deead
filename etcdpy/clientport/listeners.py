"""Opens the client and metrics listeners: gRPC and HTTP on each client URL, HTTP on each
--listen-metrics-urls URL (/metrics, /health, /livez and /readyz only there).

gRPC is served by etcdpy.h2grpc on the same connections as HTTP. ETCDPY_CLIENT_FRONT=off serves
the client URLs with grpc.aio's server instead (no HTTP side): a reference to measure against,
and an escape hatch; it serves plain http client URLs only (https ones stop the start).

https client and metrics URLs serve TLS (etcdpy.clientport.tls); the front-end processes
serve TLS on their own sockets with the same settings.

With ``--frontend-processes`` N >= 2 the client URLs are served by N front-end processes
(etcdpy.frontend); this process then listens only on private unix sockets: HTTP (connections
relayed by the front-ends) and the core link (their calls). The JSON gateway calls the
handlers in process.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from etcdpy.api.grpc_options import GRPC_OVERHEAD_BYTES, keepalive_policy
from etcdpy.api.grpc_server import build_grpc_server, build_method_handlers
from etcdpy.clientport.gateway import Gateway
from etcdpy.clientport.http1 import Handler, HttpRequest, Response, text_error
from etcdpy.clientport.routes import HttpApi
from etcdpy.clientport.sniffer import ClientFront, PrivateSocket
from etcdpy.clientport.tls import ClientTLS, load_client_tls
from etcdpy.config import TLS_SCHEMES, URL
from etcdpy.corelink.core import CoreLinkServer
from etcdpy.corelink.stats import add_counts
from etcdpy.corelink.wire import CORE_HTTP_SOCKET, CORE_LINK_SOCKET
from etcdpy.frontend.supervisor import FrontendSupervisor, bind_client_sockets, secure_flags
from etcdpy.h2grpc.server import GrpcServer
from etcdpy.observability.metrics import build_registry
from etcdpy.server.ops.view import EtcdServerView

if TYPE_CHECKING:
    from etcdpy.server.etcd_server import EtcdServer

log = structlog.get_logger(__name__)

# The gateway's bodies may carry a whole request of --max-request-bytes as base64 JSON.
HTTP_BODY_OVERHEAD = 2
# How long a scrape waits for the front-ends' counts.
STATS_TIMEOUT_SECONDS = 1.0


class ClientListeners:
    def __init__(
        self,
        server: EtcdServer,
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]],
        client_front: bool = True,
    ) -> None:
        self._server = server
        # False (ETCDPY_CLIENT_FRONT=off): grpc.aio serves the client URLs, without HTTP
        self._client_front = client_front
        config = server.config
        self._grpc = GrpcServer(
            handlers,
            config.max_request_bytes + GRPC_OVERHEAD_BYTES,
            config.max_concurrent_streams,
            keepalive_policy(config),
        )
        self._direct: grpc.aio.Server | None = None
        self._handlers = handlers
        self._socket: PrivateSocket | None = None
        self._fronts: list[ClientFront] = []
        self._waiting: list[asyncio.Server] = []  # client URLs bound, not yet served
        self._gateway: Gateway | None = None
        self._link: CoreLinkServer | None = None
        self.frontends: FrontendSupervisor | None = None
        self._tls: ClientTLS | None = None
        self.registry = build_registry(server.metrics, EtcdServerView(server))

    async def bind(self) -> bool:
        """Binds every listener; False (logged) if an address is taken.

        Metrics URLs serve at once; client URLs only from ``serve()`` on: until then their
        connections wait in the backlog, as etcd's wait for the member to be published."""
        config = self._server.config
        try:
            self._tls = load_client_tls(config)
            secure_flags(config.listen_client_urls)
        except ValueError as exc:  # TLSSetupError, ConfigError: etcd's messages
            log.error("cannot start member", error=str(exc))
            return False
        if config.frontend_count > 1:
            return await self._bind_with_frontends(config.frontend_count)
        if not self._client_front:
            if any(url.scheme in TLS_SCHEMES for url in config.listen_client_urls):
                log.error(
                    "ETCDPY_CLIENT_FRONT=off serves plain gRPC only; https client URLs need "
                    "etcdpy's own client front (unset ETCDPY_CLIENT_FRONT)"
                )
                return False
            self._direct = build_grpc_server(self._server, self._handlers)
            for url in config.listen_client_urls:
                if self._direct.add_insecure_port(url.netloc) == 0:
                    log.error("cannot listen", address=url.netloc)
                    return False
        max_body = HTTP_BODY_OVERHEAD * config.max_request_bytes + 64 * 1024
        try:
            if self._direct is None:
                self._gateway = self._new_gateway()
                api = HttpApi(self._server, self.registry, self._gateway)
                front = ClientFront(api, self._grpc, max_body)
                self._fronts.append(front)
                # Listening sockets of our own: connections queue in their backlog until
                # serve() (asyncio would only call listen() when it starts serving).
                [sockets] = bind_client_sockets(config.listen_client_urls, 1)
                secure = secure_flags(config.listen_client_urls)
                for sock, is_tls in zip(sockets, secure, strict=True):
                    server = await front.listen_socket(
                        sock, start_serving=False, tls=self._tls_for(is_tls)
                    )
                    self._waiting.append(server)
            await self._listen_metrics(max_body)
        except OSError as exc:
            log.error("cannot listen", error=str(exc))
            return False
        return True

    async def serve(self) -> bool:
        """Starts serving the client URLs; False (logged) if a front-end did not start."""
        if self._direct is not None:
            await self._direct.start()
        for server in self._waiting:
            await server.start_serving()
        self._waiting.clear()
        if self.frontends is not None:
            if not await self.frontends.start():
                return False
            log.info(
                "front-end processes serving",
                count=len(self.frontends.pids),
                pids=self.frontends.pids,
            )
        return True

    async def _listen_metrics(self, max_body: int) -> None:
        config = self._server.config
        if config.listen_metrics_urls:
            metrics_api = HttpApi(
                self._server, self.registry, before_scrape=self._collect_frontend_stats
            )
            front = ClientFront(_metrics_only(metrics_api), None, max_body)
            self._fronts.append(front)
            for url in config.listen_metrics_urls:
                await front.listen(url.host, url.port, self._tls_for(_is_tls(url)))

    async def _bind_with_frontends(self, count: int) -> bool:
        config = self._server.config
        max_body = HTTP_BODY_OVERHEAD * config.max_request_bytes + 64 * 1024
        try:
            slots = bind_client_sockets(config.listen_client_urls, count)
        except OSError as exc:
            log.error("cannot listen", error=str(exc))
            return False
        self._socket = private = PrivateSocket()
        self._gateway = self._new_gateway()
        api = HttpApi(
            self._server, self.registry, self._gateway, before_scrape=self._collect_frontend_stats
        )
        front = ClientFront(api, self._grpc, max_body)
        self._fronts.append(front)
        try:
            await front.listen_unix(private.sibling(CORE_HTTP_SOCKET))
        except OSError as exc:
            log.error("cannot listen", error=str(exc))
            return False
        self.frontends = FrontendSupervisor(
            slots,
            os.path.dirname(private.path),
            self._grpc,
            max_body,
            config.log_level,
            config.log_outputs,
            replica_args=self._replica_args(),
            on_exit=self._frontend_exited,
            secure=secure_flags(config.listen_client_urls),
            client_tls_json=self._tls.to_json() if self._tls is not None else None,
        )
        self._link = CoreLinkServer(
            self._handlers,
            self.frontends.on_hello,
            uncounted=build_method_handlers(self._server, counted=False),
            feed=self._server.feed,
            read_index=self._server.linearizable_read,
            renew_many=self._server.lease_renew_many,
        )
        await self._link.listen(private.sibling(CORE_LINK_SOCKET))
        try:
            await self._listen_metrics(max_body)
        except OSError as exc:
            log.error("cannot listen", error=str(exc))
            return False
        return True

    def _tls_for(self, is_tls: bool) -> ClientTLS | None:
        if not is_tls:
            return None
        assert self._tls is not None  # load_client_tls made it for every https URL
        return self._tls

    def _new_gateway(self) -> Gateway:
        # The gRPC server's handlers and message limit: a gateway call is a gRPC call.
        limit = self._server.config.max_request_bytes + GRPC_OVERHEAD_BYTES
        return Gateway(self._handlers, limit)

    def _replica_args(self) -> list[str]:
        """What a front-end needs to serve reads and watches from the backend file."""
        server, config = self._server, self._server.config
        return [
            "--db-path",
            server.backend.path,
            "--db-map-size",
            str(server.backend.map_size),
            "--watch-progress-notify-interval",
            str(config.experimental_watch_progress_notify_interval),
            "--max-request-bytes",
            str(config.max_request_bytes),
            "--max-txn-ops",
            str(config.max_txn_ops),
            "--auth-token",  # front-ends verify JWTs themselves (etcdpy.frontend.auth_routes)
            config.auth_token,
        ]

    async def _collect_frontend_stats(self) -> None:
        """Before a scrape: the gRPC counts of the calls the front-ends answered themselves."""
        if self._link is not None:
            answers = await self._link.collect_stats(STATS_TIMEOUT_SECONDS)
            self._server.metrics.frontend_watchers.clear()  # only the living count
            for counts in answers:
                add_counts(self._server.metrics, counts)

    def _frontend_exited(self) -> None:
        # A reader killed inside a read transaction would pin old pages until cleared.
        self._server.backend.env.reader_check()

    def stop_accepting(self) -> None:
        for front in self._fronts:
            front.stop_accepting()

    async def stop(self, grace: float) -> None:
        self.stop_accepting()
        if self.frontends is not None:  # they finish their calls through this process first
            await self.frontends.stop(grace)
        if self._link is not None:
            await self._link.close()
        await self._grpc.stop(grace)
        if self._direct is not None:
            await self._direct.stop(grace)
        for front in self._fronts:
            await front.close()
        if self._gateway is not None:
            await self._gateway.close()
        if self._socket is not None:
            self._socket.cleanup()


def _is_tls(url: URL) -> bool:
    return url.scheme in TLS_SCHEMES


def _metrics_only(api: HttpApi) -> Handler:
    async def handle(request: HttpRequest) -> Response:
        # /livez and /readyz too: the Helm chart's probes use this port, plain HTTP even when
        # the client port serves TLS (issue 18's contract).
        if request.path in ("/metrics", "/health", "/livez", "/readyz"):
            return await api(request)
        return text_error(404, "404 page not found")

    return handle
