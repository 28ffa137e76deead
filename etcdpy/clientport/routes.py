"""The HTTP/1.1 side of the client port: /metrics, /health, /livez, /readyz, /version.

Semantics follow etcd 3.4: /health answers {"health":"true"} with 200, or {"health":"false"}
with 503 when there is an active alarm (unless excluded with ?exclude=NOSPACE), no leader, or a
read through raft fails within a second; the reason goes to the log (etcd 3.5 added a "reason"
field to the body; 3.4's clients and tests compare the body whole). /livez and /readyz
follow etcd 3.6 (checks listed with ?verbose, skipped with ?exclude=name). Unknown paths get
Go's "404 page not found". The JSON gateway under /v3/ plugs in as ``gateway``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from etcdpy import ETCD_API_VERSION
from etcdpy.clientport.http1 import HttpRequest, HttpResponse, Response, text_error
from etcdpy.errors import EtcdError
from etcdpy.server.ops.view import cluster_version

if TYPE_CHECKING:
    from etcdpy.server.etcd_server import EtcdServer

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT_SECONDS = 1.0
JSON = "application/json"

Gateway = Callable[[HttpRequest], Awaitable[Response]]


def _method_not_allowed(allow: str) -> HttpResponse:
    response = text_error(405, "Method Not Allowed")
    response.headers.append(("Allow", allow))
    return response


def active_alarms(server: EtcdServer) -> list[str]:
    """Names of the alarms raised on any member (NOSPACE, CORRUPT)."""
    return server.maintenance.alarms.active_names()


class HttpApi:
    def __init__(
        self,
        server: EtcdServer,
        registry: CollectorRegistry,
        gateway: Gateway | None = None,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._server = server
        self._registry = registry
        self._gateway = gateway
        self._before_scrape = before_scrape  # e.g. the front-end processes' counts

    async def __call__(self, request: HttpRequest) -> Response:
        path = request.path
        if path == "/metrics":
            if self._before_scrape is not None:
                await self._before_scrape()
            return self._metrics()
        if path == "/health":
            return await self._health(request)
        if path in ("/livez", "/readyz"):
            return await self._probe(request, path[1:])
        if path == "/version":
            if request.method != "GET":
                return _method_not_allowed("GET")
            return self._version()
        if path.startswith(("/v3/", "/v3beta/")) and self._gateway is not None:
            return await self._gateway(request)
        return text_error(404, "404 page not found")

    # -- /metrics ------------------------------------------------------------------------

    def _metrics(self) -> HttpResponse:
        return HttpResponse(200, generate_latest(self._registry), CONTENT_TYPE_LATEST)

    # -- /version ------------------------------------------------------------------------

    def _version(self) -> HttpResponse:
        body = json.dumps(
            {"etcdserver": ETCD_API_VERSION, "etcdcluster": cluster_version()},
            separators=(",", ":"),
        )
        return HttpResponse(200, body.encode(), JSON)

    # -- /health -------------------------------------------------------------------------

    async def _health(self, request: HttpRequest) -> HttpResponse:
        if request.method != "GET":
            return _method_not_allowed("GET")
        excluded = set(request.query.get("exclude", []))
        serializable = request.query.get("serializable", [""])[-1] == "true"
        reason = await self.health_problem(excluded, serializable)
        metrics = self._server.metrics
        body = b'{"health":"false"}' if reason else b'{"health":"true"}'
        if reason:
            log.warning("/health error", reason=reason, status_code=503)
            metrics.health_failures += 1
            # http.Error: plain text, a trailing newline, status 503.
            return HttpResponse(503, body + b"\n", headers=[("X-Content-Type-Options", "nosniff")])
        metrics.health_success += 1
        return HttpResponse(200, body)  # text/plain, as etcd (Go sniffs the body)

    async def health_problem(self, excluded: set[str], serializable: bool) -> str:
        """ "" when healthy, else etcd's reason."""
        for name in active_alarms(self._server):
            if name not in excluded:
                return f"ALARM {name}"
        if self._server.leader_id == 0:
            return "RAFT NO LEADER"
        if not serializable and not await self._linearizable_read_ok():
            return "RANGE ERROR"
        return ""

    async def _linearizable_read_ok(self) -> bool:
        try:
            await asyncio.wait_for(self._server.linearizable_read(), HEALTH_TIMEOUT_SECONDS)
        except (TimeoutError, EtcdError):
            return False
        return True

    # -- /livez, /readyz -----------------------------------------------------------------

    async def _probe(self, request: HttpRequest, kind: str) -> HttpResponse:
        if request.method != "GET":
            return _method_not_allowed("GET")
        excluded = set(request.query.get("exclude", []))
        verbose = "verbose" in request.query
        checks: list[tuple[str, Callable[[], Awaitable[bool]]]] = [
            ("serializable_read", self._serializable_read_ok),
        ]
        if kind == "readyz":
            checks.insert(0, ("data_corruption", self._no_corruption))
            checks.append(("linearizable_read", self._linearizable_read_ok))
        lines: list[str] = []
        failed = False
        for name, check in checks:
            if name in excluded:
                lines.append(f"[+]{name} excluded: ok")
                continue
            if await check():
                lines.append(f"[+]{name} ok")
            else:
                failed = True
                lines.append(f"[-]{name} failed: reason withheld")
        if failed:
            lines.append(f"{kind} check failed")
            return HttpResponse(503, ("\n".join(lines) + "\n").encode())
        body = "\n".join([*lines, "ok"]) + "\n" if verbose else "ok"
        return HttpResponse(200, body.encode())

    async def _serializable_read_ok(self) -> bool:
        try:
            self._server.kv.current_revision  # noqa: B018 - the store answers at all
        except Exception:
            return False
        return True

    async def _no_corruption(self) -> bool:
        return "CORRUPT" not in active_alarms(self._server)
