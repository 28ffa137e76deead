"""Front-end processes (``--frontend-processes N``, N >= 2).

The core process (raft, WAL, apply, lessor, mvcc) binds the client URLs and hands each front-end
a listening socket of its own on the same port (SO_REUSEPORT: the kernel spreads connections).
A front-end terminates gRPC (etcdpy.h2grpc): Range and Watch are served from its read replica
of the core's file, LeaseKeepAlive streams are batched into RENEW calls, other unary calls cross
to the core over the core link (etcdpy.corelink), many per write, and the Snapshot stream is
tunnelled over it with credit; HTTP/1.1 connections (/metrics, /health, the /v3 gateway) are
relayed byte for byte to the core's private listener. Behaviour comes from the core's own
handler code either way. Auth: what a front-end answers it checks against its auth view
(``replica.py``); a call with a simple token goes to the core (``auth_routes.py``).

The supervisor (``supervisor.py``) starts each front-end as ``python -m
etcdpy.cli.frontend_run``: a front-end's wiring (arguments, the client port, the core link) lives in
cli/ beside the core's.

May import: corelink, api, server, server.ops, membership, lease, auth, wal, peer, mvcc, raft,
h2grpc, bbolt and the base.
"""
