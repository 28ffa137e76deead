"""etcd's gRPC server flags as etcdpy.h2grpc's keepalive policy, and as grpc.aio server options
with handler registration for ETCDPY_CLIENT_FRONT=off (kept apart from the services so that a
front-end imports none of the core)."""

from __future__ import annotations

from typing import Any

import grpc

from etcdpy.config import ServerConfig
from etcdpy.h2grpc.server import KeepalivePolicy

# etcd lets a request exceed --max-request-bytes by this much at the gRPC layer, so the server
# can answer "request is too large" itself instead of a transport error.
GRPC_OVERHEAD_BYTES = 512 * 1024
MAX_SEND_BYTES = 2**31 - 1


# gRPC's integer channel arguments stop at int32.
_INT32_MAX = 2**31 - 1


def grpc_server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """The client-facing gRPC server's arguments from etcd's flags (v3rpc/grpc.go): message
    sizes, --max-concurrent-streams, and the --grpc-keepalive-* settings."""
    options = [
        ("grpc.max_receive_message_length", config.max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", min(config.max_concurrent_streams, _INT32_MAX)),
        # etcd enforces the client's ping interval only while a stream is open; permitting pings
        # without calls is the lenient side of that (a client's idle keepalive is not refused).
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if config.grpc_keepalive_min_time > 0:
        min_time_ms = int(config.grpc_keepalive_min_time * 1000)
        options.append(("grpc.http2.min_ping_interval_without_data_ms", min_time_ms))
    if config.grpc_keepalive_interval > 0 and config.grpc_keepalive_timeout > 0:
        interval_ms = min(int(config.grpc_keepalive_interval * 1000), _INT32_MAX)
        options.append(("grpc.keepalive_time_ms", interval_ms))
        options.append(("grpc.keepalive_timeout_ms", int(config.grpc_keepalive_timeout * 1000)))
    return options


def keepalive_policy(config: ServerConfig) -> KeepalivePolicy:
    """etcd's --grpc-keepalive-* flags for etcdpy.h2grpc."""
    return KeepalivePolicy(
        interval=config.grpc_keepalive_interval,
        timeout=config.grpc_keepalive_timeout,
        min_time=config.grpc_keepalive_min_time,
    )


def generic_handlers(
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]],
) -> tuple[grpc.GenericRpcHandler[Any, Any], ...]:
    """One generic handler per service, from handlers keyed by full method path."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for path, handler in handlers.items():
        service, method = path[1:].split("/", 1)
        by_service.setdefault(service, {})[method] = handler
    return tuple(
        grpc.method_handlers_generic_handler(service, methods)
        for service, methods in by_service.items()
    )
