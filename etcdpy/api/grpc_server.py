"""Builds the member's method handlers: every v3 service inside the pipeline's interceptors
(etcdpy.api.pipeline), and the grpc.aio server that ETCDPY_CLIENT_FRONT=off serves them with.

Any RPC a service does not define answers UNIMPLEMENTED with a message naming it.
"""

from __future__ import annotations

import grpc

from etcdpy.api.auth import AuthService
from etcdpy.api.cluster import ClusterService, fill_cluster_header
from etcdpy.api.concurrency import ElectionService, LockService, Recipes
from etcdpy.api.grpc_metrics import Metrics
from etcdpy.api.grpc_options import generic_handlers, grpc_server_options
from etcdpy.api.interceptors import Auth, Codec, Header, MapErrors
from etcdpy.api.kv import KVService
from etcdpy.api.learner_guard import LearnerGuard
from etcdpy.api.lease import LeaseService
from etcdpy.api.local_client import LocalClient
from etcdpy.api.maintenance import MaintenanceService
from etcdpy.api.pipeline import Handlers, Interceptor, build_handlers
from etcdpy.api.quota import Quota
from etcdpy.api.watch import WatchService
from etcdpy.server.etcd_server import EtcdServer


def core_interceptors(server: EtcdServer, counted: bool = True) -> tuple[Interceptor, ...]:
    """The pipeline of the core's handlers, outermost first (etcdpy.api.pipeline)."""
    metrics: tuple[Interceptor, ...] = (Metrics(server.metrics.grpc),) if counted else ()
    return (
        *metrics,
        Codec(),
        MapErrors(),
        Auth(),
        LearnerGuard(server),
        Quota(server, server.config.quota_bytes is not None),
        Header(server.fill_header, lambda header: fill_cluster_header(header, server)),
    )


def build_method_handlers(server: EtcdServer, counted: bool = True) -> Handlers:
    """Every method of the six v3 services and of Lock and Election, as the gRPC servers, the
    core link and the JSON gateway run them (``counted=False``: without the gRPC counters, for
    calls a front-end counted already)."""
    recipes = Recipes(LocalClient(server))  # etcd's v3lock and v3election, on its own client
    services: dict[str, object] = {
        "KV": KVService(server),
        "Maintenance": MaintenanceService(server),
        "Cluster": ClusterService(server),
        "Watch": WatchService.for_server(server),
        "Lease": LeaseService(server),
        "Auth": AuthService(server),
        "Lock": LockService(recipes),
        "Election": ElectionService(recipes),
    }
    return build_handlers(services, core_interceptors(server, counted))


def build_grpc_server(server: EtcdServer, handlers: Handlers | None = None) -> grpc.aio.Server:
    grpc_server = grpc.aio.server(options=grpc_server_options(server.config))
    grpc_server.add_generic_rpc_handlers(
        generic_handlers(handlers if handlers is not None else build_method_handlers(server))
    )
    return grpc_server
