"""etcd's counters of store operations (mvcc/metrics_txn.go), kept by the store.

Every read or write transaction adds its ranges, puts and deletes when it ends; one with more
than one operation is also a txn. A Range request is one read of one range; a Txn counts each
compare and each operation it runs (compares are ranges, as in etcd).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class MvccCounts:
    ranges: int = 0
    puts: int = 0
    deletes: int = 0
    txns: int = 0
    put_bytes: int = 0  # keys and values put (etcd_debugging_mvcc_total_put_size_in_bytes)

    def add(self, ranges: int, puts: int, deletes: int, put_bytes: int = 0) -> None:
        """One transaction's operations."""
        self.ranges += ranges
        self.puts += puts
        self.deletes += deletes
        self.put_bytes += put_bytes
        if ranges + puts + deletes > 1:
            self.txns += 1

    def snapshot(self) -> list[int]:
        """[ranges, puts, deletes, txns, put_bytes]."""
        return [self.ranges, self.puts, self.deletes, self.txns, self.put_bytes]

    def take(self) -> list[int]:
        """The counts since the last take (a front-end's, sent to the core), reset to zero."""
        out = self.snapshot()
        self.ranges = self.puts = self.deletes = self.txns = self.put_bytes = 0
        return out
