"""The durable raft log: the write-ahead log (segments of CRC'd records, fsync per Ready),
snapshot files (``snapshotter``), and the raft storage the core reads built on both
(``raft_storage``).

May import: mvcc, raft, h2grpc, bbolt and the base.
"""
