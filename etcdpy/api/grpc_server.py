"""Builds the gRPC server with etcd's limits and every v3 service registered."""

from __future__ import annotations

import grpc

from etcdpy.api.cluster import ClusterService
from etcdpy.api.kv import KVService
from etcdpy.api.maintenance import MaintenanceService
from etcdpy.api.status import fill_unimplemented
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.server.etcd_server import EtcdServer

# etcd lets a request exceed --max-request-bytes by this much at the gRPC layer, so the server
# can answer "request is too large" itself instead of a transport error.
GRPC_OVERHEAD_BYTES = 512 * 1024
MAX_SEND_BYTES = 2**31 - 1


class WatchService(rpc_pb2_grpc.WatchServicer):
    pass


class LeaseService(rpc_pb2_grpc.LeaseServicer):
    pass


class AuthService(rpc_pb2_grpc.AuthServicer):
    pass


fill_unimplemented(WatchService, "Watch")
fill_unimplemented(LeaseService, "Lease")
fill_unimplemented(AuthService, "Auth")


def build_grpc_server(server: EtcdServer) -> grpc.aio.Server:
    options = [
        ("grpc.max_receive_message_length", server.config.max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]
    grpc_server = grpc.aio.server(options=options)
    rpc_pb2_grpc.add_KVServicer_to_server(KVService(server), grpc_server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(MaintenanceService(server), grpc_server)
    rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterService(server), grpc_server)
    rpc_pb2_grpc.add_WatchServicer_to_server(WatchService(), grpc_server)
    rpc_pb2_grpc.add_LeaseServicer_to_server(LeaseService(), grpc_server)
    rpc_pb2_grpc.add_AuthServicer_to_server(AuthService(), grpc_server)
    return grpc_server
