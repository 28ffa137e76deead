"""The local channel between front-end processes and the core process (``--frontend-processes``).

A front-end terminates gRPC; each unary call it cannot answer itself crosses here as one record
(a call id, the method's number, the request's bytes exactly as the client sent them) and comes
back as one record (the call id, a gRPC status code, the response's bytes or the error's text).
Records travel back to back on one unix stream socket per front-end, many per write in both
directions: a burst of 64 calls costs one system call each way, not 64.

``wire`` is the record format (pure), ``core`` serves records in the core process by calling the
very method handlers the core's own gRPC server uses, ``client`` is the front-end's side.

May import: api, server, server.ops, membership, lease, auth, wal, peer, mvcc, raft, h2grpc,
bbolt and the base.

``errors`` says what a status from the core means on the front-end's side.
"""
