"""A front-end's gRPC method handlers: bytes in, bytes out, the work done by the core
(etcdpy.frontend.to_core), but for what ``local_handlers`` answers in the front-end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from etcdpy.api.services import SERVICES
from etcdpy.corelink.client import CoreLinkClient
from etcdpy.corelink.wire import METHOD_NUMBER
from etcdpy.frontend.to_core import tunnelled, unary_to_core

if TYPE_CHECKING:
    from etcdpy.corelink.stats import ReadCounts
    from etcdpy.frontend.replica import FrontendReplica
    from etcdpy.mvcc.watcher import WatchStream
    from etcdpy.observability.metrics import GrpcStats

Handlers = dict[str, "grpc.RpcMethodHandler[Any, Any]"]


def build_handlers(link: CoreLinkClient) -> Handlers:
    """Every method of the services (etcdpy.api.services), carried over the core link."""
    handlers: Handlers = {}
    for service in SERVICES.values():
        for method in service.descriptor.methods:
            path = service.path(method.name)
            number = METHOD_NUMBER[path]
            if method.client_streaming and method.server_streaming:
                behavior = tunnelled(link, number, client_streaming=True)
                handlers[path] = grpc.stream_stream_rpc_method_handler(behavior)
            elif method.server_streaming:
                behavior = tunnelled(link, number, client_streaming=False)
                handlers[path] = grpc.unary_stream_rpc_method_handler(behavior)
            elif not method.client_streaming:  # etcd's API has no client-streaming-only call
                handlers[path] = grpc.unary_unary_rpc_method_handler(unary_to_core(link, number))
    return handlers


def local_handlers(
    replica: FrontendReplica,
    link: CoreLinkClient,
    stats: GrpcStats,
    counts: ReadCounts,
    watch_settings: tuple[float, int],
    max_txn_ops: int,
) -> Handlers:
    """KV.Range, read-only KV.Txn and Watch.Watch from the front-end's replica, and
    LeaseKeepAlive with batched renewals, through the same pipeline as the core's handlers
    (etcdpy.api.pipeline) but for quota and header: a front-end proposes nothing itself, and
    LocalKV fills the header of what it answers (what it hands to the core comes back with the
    core's header). Auth is checked against the replica's auth view; where tokens are simple,
    calls that carry one go to the core (etcdpy.frontend.auth_routes)."""
    from etcdpy.api.grpc_metrics import Metrics
    from etcdpy.api.interceptors import Auth, Codec, MapErrors
    from etcdpy.api.learner_guard import LearnerGuard
    from etcdpy.api.lease import KeepAliveService
    from etcdpy.api.pipeline import build_handlers as build_pipeline
    from etcdpy.api.watch import WatchService
    from etcdpy.auth.tokens import SimpleTokens
    from etcdpy.frontend.auth_routes import HandingWatchService, hand_off_to_core
    from etcdpy.frontend.keepalive import RenewBatcher
    from etcdpy.frontend.local_reads import LocalKV, ReadIndexBatcher

    def watch_stream(on_ready: Callable[[], None]) -> WatchStream:
        assert replica.store is not None
        return replica.store.new_stream(on_ready)

    def header() -> tuple[int, int, int]:
        return replica.cluster_id, replica.member_id, replica.raft_term

    view = replica.auth
    assert view is not None  # the replica has started
    # Simple tokens live in the core's memory: calls carrying one are checked there.
    tokens_in_core = isinstance(view.tokens, SimpleTokens)
    watch = (
        HandingWatchService(link, watch_stream, header, *watch_settings, auth=view)
        if tokens_in_core
        else WatchService(watch_stream, header, *watch_settings, auth=view)
    )
    services: dict[str, object] = {
        "KV": LocalKV(replica, link, ReadIndexBatcher(link), counts, max_txn_ops),
        "Watch": watch,
        "Lease": KeepAliveService(replica.fill_header, RenewBatcher(link).renew),
    }
    hand_off = hand_off_to_core(link) if tokens_in_core else None
    auth = Auth(view, max_txn_ops=max_txn_ops, hand_off=hand_off)
    interceptors = (Metrics(stats), Codec(), MapErrors(), auth, LearnerGuard(replica))
    local = (("KV", "Range"), ("KV", "Txn"), ("Watch", "Watch"), ("Lease", "LeaseKeepAlive"))
    return build_pipeline(services, interceptors, only=local)
