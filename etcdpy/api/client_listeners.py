"""Opens the client and metrics listeners: gRPC and HTTP on each client URL, HTTP on each
--listen-metrics-urls URL (/metrics and /health only there, as etcd).

ETCDPY_CLIENT_FRONT=off binds gRPC straight to the client URLs instead (no HTTP side); it is
there to measure what the front costs, and as an escape hatch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import grpc
import structlog

from etcdpy.api.gateway import Gateway
from etcdpy.api.http_api import HttpApi
from etcdpy.observability.metrics import build_registry
from etcdpy.server.client_front import ClientFront, PrivateSocket
from etcdpy.server.http1 import Handler, HttpRequest, Response, text_error
from etcdpy.server.ops_view import EtcdServerView

if TYPE_CHECKING:
    from etcdpy.server.etcd_server import EtcdServer

log = structlog.get_logger(__name__)

# The gateway's bodies may carry a whole request of --max-request-bytes as base64 JSON.
HTTP_BODY_OVERHEAD = 2


class ClientListeners:
    def __init__(self, server: EtcdServer, grpc_server: grpc.aio.Server) -> None:
        self._server = server
        self._grpc = grpc_server
        self._socket: PrivateSocket | None = None
        self._fronts: list[ClientFront] = []
        self._gateway: Gateway | None = None
        self.registry = build_registry(server.metrics, EtcdServerView(server))

    async def start(self) -> bool:
        """Binds every listener and starts gRPC; False (logged) if an address is taken."""
        config = self._server.config
        direct = os.environ.get("ETCDPY_CLIENT_FRONT", "on") == "off"
        if direct:
            for url in config.listen_client_urls:
                if self._grpc.add_insecure_port(url.netloc) == 0:
                    log.error("cannot listen", address=url.netloc)
                    return False
        else:
            self._socket = PrivateSocket()
            if self._grpc.add_insecure_port(self._socket.grpc_address) == 0:
                log.error("cannot listen", address=self._socket.grpc_address)
                return False
        await self._grpc.start()
        max_body = HTTP_BODY_OVERHEAD * config.max_request_bytes + 64 * 1024
        try:
            if not direct:
                assert self._socket is not None
                self._gateway = Gateway(self._socket.grpc_address)
                api = HttpApi(self._server, self.registry, self._gateway)
                front = ClientFront(api, self._socket.path, max_body)
                self._fronts.append(front)
                for url in config.listen_client_urls:
                    await front.listen(url.host, url.port)
            if config.listen_metrics_urls:
                metrics_api = HttpApi(self._server, self.registry)
                front = ClientFront(_metrics_only(metrics_api), None, max_body)
                self._fronts.append(front)
                for url in config.listen_metrics_urls:
                    await front.listen(url.host, url.port)
        except OSError as exc:
            log.error("cannot listen", error=str(exc))
            return False
        return True

    def stop_accepting(self) -> None:
        for front in self._fronts:
            front.stop_accepting()

    async def stop(self, grace: float) -> None:
        self.stop_accepting()
        await self._grpc.stop(grace)
        for front in self._fronts:
            await front.close()
        if self._gateway is not None:
            await self._gateway.close()
        if self._socket is not None:
            self._socket.cleanup()


def _metrics_only(api: HttpApi) -> Handler:
    async def handle(request: HttpRequest) -> Response:
        if request.path in ("/metrics", "/health"):
            return await api(request)
        return text_error(404, "404 page not found")

    return handle
