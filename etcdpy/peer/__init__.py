"""The peer side of a member: the transport that carries raft messages and snapshots between
members (``transport``, with its small request/answer RPC), its TLS (``tls``, built on the
shared ``etcdpy.tls``) and the prober that measures round trips to peers (``probe``).

May import: mvcc, raft, h2grpc, bbolt and the base.
"""
