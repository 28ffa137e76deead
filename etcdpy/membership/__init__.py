"""Cluster membership: the members and their ids (``members``, with etcd's checks of a
change), how the member list lives in the backend (``store``), and the changes a client asks
for (``changes``: add, remove, update, promote, leader transfer), which need of the member only
``changes.MembershipHost``.

May import: peer, mvcc, raft, h2grpc, bbolt and the base.
"""
