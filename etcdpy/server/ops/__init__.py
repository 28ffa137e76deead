"""What an operator does to a member: alarms and the quota, maintenance (hashes, snapshots),
defragmentation, the corruption check, auto-compaction, and the view /metrics and /health read.
None of it imports the server: each takes a narrow protocol (``MaintenanceHost``, ``DefragHost``,
``ViewedMember``) or callables (``corrupt_check.CheckedMember``).

May import: membership, lease, wal, peer, mvcc, raft, h2grpc, bbolt and the base.
"""
