"""The client port: the sniffer that tells gRPC (HTTP/2) from HTTP/1.1 on one socket, the
HTTP/1.1 server and its routes (/health, /metrics, /version, the v3 JSON gateway, the web UI),
and ``listeners``, which opens the client URLs and, with ``--frontend-processes``, starts the
front-end processes and the core's end of their links.

May import: frontend, corelink, api, server, server.ops, membership, lease, auth, wal, peer, mvcc,
raft, h2grpc, bbolt and the base.
"""
