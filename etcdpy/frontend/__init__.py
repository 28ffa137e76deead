"""Front-end processes (``--frontend-processes N``, N >= 2).

The core process (raft, WAL, apply, lessor, mvcc) binds the client URLs and hands each front-end
a listening socket of its own on the same port (SO_REUSEPORT: the kernel spreads connections).
A front-end terminates gRPC: unary calls cross to the core over the core link (etcdpy.corelink),
many per write; streams (Watch, LeaseKeepAlive, Snapshot) are relayed as gRPC streams to the
core's private gRPC socket; HTTP/1.1 connections (/metrics, /health, the /v3 gateway) are relayed
byte for byte to the core's private listener. So every behaviour is the core's, and the CPU cost
of gRPC (most of a request's) is spread over the front-ends.
"""
