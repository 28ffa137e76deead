"""The gRPC services of etcd's v3 API (KV, Watch, Lease, Cluster, Maintenance, Auth stubs,
election and lock): thin adapters that parse a request, call the member (server.EtcdServer) and
fill the response header, with their interceptors (errors, metrics, quota, learner guard).
``services`` names every method; the core's gRPC server, the front-ends and the JSON gateway
all run these same handlers.

May import: server, server.ops, membership, lease, auth, wal, peer, mvcc, raft, h2grpc, bbolt and
the base.
"""
