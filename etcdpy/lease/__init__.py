"""Leases: the lessor (every member's lease state, kept through the log and on the backend),
their apply (grant, revoke, checkpoint of remaining TTLs) and the driver that, on the leader
only, expires leases by proposing revokes and answers keep-alives.

May import: mvcc, raft, h2grpc, bbolt and the base.
"""
