"""gRPC server options and handler registration shared by the member and its front-end
processes (kept apart from the services so that a front-end imports none of the core)."""

from __future__ import annotations

from typing import Any

import grpc

# etcd lets a request exceed --max-request-bytes by this much at the gRPC layer, so the server
# can answer "request is too large" itself instead of a transport error.
GRPC_OVERHEAD_BYTES = 512 * 1024
MAX_SEND_BYTES = 2**31 - 1


def grpc_server_options(max_request_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]


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
