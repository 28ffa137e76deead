"""Tools run from the ``etcdpy`` command that are clients of a member, not parts of one:
the benchmark (and its workers and report), ``snapshot`` (restore and status of a snapshot
file, as etcdutl) and the TCP gateway.

May import: clientport, frontend, corelink, api, server, server.ops, membership, lease, auth, wal,
peer, mvcc, raft, h2grpc, bbolt and the base.
"""
