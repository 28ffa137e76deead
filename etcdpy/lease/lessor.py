"""The lessor: leases, their attached keys, and (on the leader) their deadlines.

Pure: no asyncio, no wall clock. Time comes from an injected ``clock`` (monotonic seconds).

Two kinds of calls, as in etcd:

- Applied through the raft log, on every member, in log order: ``grant``, ``revoke``,
  ``checkpoint``, ``attach``/``detach``. They change the replicated state (TTL, the last
  checkpointed remaining TTL, the attached keys) and persist it in the backend bucket
  ``lease`` inside the apply batch, so the lease records commit with the applied index.
- Local to the leader ("primary"): ``promote``/``demote``, ``renew`` (keep-alives do not go
  through the log), ``find_expired`` and ``due_checkpoints``. Only the primary has deadlines;
  on every other member a lease never expires by itself, it waits for the leader's revoke.

A deadline starts from the last checkpointed remaining TTL when the member is promoted, so a
restart or a leader change does not hand a lease its full TTL again. A renew after a
checkpoint has to clear that checkpoint through the log (``Renewal.clear_checkpoint``):
otherwise a new leader would start the renewed lease from the stale, shorter value.

Record format in the ``lease`` bucket: key = the lease id as 8 bytes big-endian (signed),
value = TTL and remaining TTL as two signed 8-byte big-endian integers.
"""

from __future__ import annotations

import heapq
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdpy import errors
from etcdpy.mvcc.backend import LEASE, Backend

Clock = Callable[[], float]

NO_LEASE = 0
# etcd's limit for a granted TTL, in seconds (about 285 years).
MAX_LEASE_TTL = 9_000_000_000
# etcd revokes at most this many expired leases per second, so mass expiry cannot starve writes.
LEASE_REVOKE_RATE = 1000
# A lease found expired is offered again after this long if its revoke did not go through.
EXPIRED_RETRY_SECONDS = 3.0
FOREVER = math.inf

_ID = struct.Struct(">q")
_RECORD = struct.Struct(">qq")


def min_lease_ttl(election_ticks: int, heartbeat_ms: int) -> int:
    """etcd's smallest TTL: 1.5 election timeouts (integer ticks), rounded up to seconds."""
    ticks = (3 * election_ticks) // 2
    return math.ceil(ticks * heartbeat_ms / 1000.0)


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int
    # The last checkpointed remaining TTL in seconds; 0 means "not set, use the full TTL".
    remaining_ttl: int = 0
    # Monotonic deadline; FOREVER on a member that is not the primary.
    expiry: float = FOREVER
    keys: set[bytes] = field(default_factory=set)

    def starting_ttl(self) -> int:
        return self.remaining_ttl if self.remaining_ttl > 0 else self.ttl

    def remaining(self, now: float) -> float:
        return self.expiry - now

    def sorted_keys(self) -> list[bytes]:
        return sorted(self.keys)


@dataclass(frozen=True, slots=True)
class Renewal:
    ttl: int
    # True when a checkpoint is on record: the caller must clear it through the log.
    clear_checkpoint: bool


class NotPrimary(Exception):
    """Deadlines live on the leader only; this member cannot renew or time leases."""


class Expired(Exception):
    """The lease is past its deadline and its revoke is under way (wait for it)."""


class Lessor:
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        min_ttl: int = 0,
        checkpoint_interval: float = 5.0,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self.min_ttl = min_ttl
        self.checkpoint_interval = checkpoint_interval
        self._leases: dict[int, Lease] = {}
        self._primary = False
        # (deadline, lease id); one live entry per lease, stale ones are dropped when popped.
        self._expiry_heap: list[tuple[float, int]] = []

    # -- state after a restart -------------------------------------------------------------

    def restore(self, lease_keys: dict[int, list[bytes]]) -> None:
        """Load the lease records and re-attach the live keys that carry a lease."""
        self._leases = {}
        with self._backend.read() as tx:
            for raw_id, raw in tx.items(LEASE):
                (lease_id,) = _ID.unpack(raw_id)
                ttl, remaining = _RECORD.unpack(raw)
                self._leases[lease_id] = Lease(
                    lease_id, max(ttl, self.min_ttl), remaining_ttl=remaining
                )
        for lease_id, keys in sorted(lease_keys.items()):
            lease = self._leases.get(lease_id)
            if lease is not None:
                lease.keys.update(keys)
        self._primary = False
        self._expiry_heap = []

    def recover(self, backend: Backend, lease_keys: dict[int, list[bytes]]) -> None:
        """The member swapped in a new backend (a snapshot from the leader): reload from it."""
        self._backend = backend
        self.restore(lease_keys)

    # -- applied through the log (every member) --------------------------------------------

    def grant(self, lease_id: int, ttl: int) -> Lease:
        if lease_id == NO_LEASE:
            raise errors.LeaseNotFound()
        if ttl > MAX_LEASE_TTL:
            raise errors.LeaseTTLTooLarge()
        if lease_id in self._leases:
            raise errors.LeaseExist()
        lease = Lease(lease_id, max(ttl, self.min_ttl))
        self._leases[lease_id] = lease
        self._persist(lease)
        if self._primary:
            lease.expiry = self._clock() + lease.ttl
            heapq.heappush(self._expiry_heap, (lease.expiry, lease_id))
        return lease

    def revoke(self, lease_id: int) -> list[bytes]:
        """Forget the lease; returns its keys in sorted order, for the caller to delete.

        The caller deletes them in the same backend batch (one revision), so a crash can
        never leave the keys without their lease or the lease without its revoke.
        """
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise errors.LeaseNotFound()
        with self._backend.batch() as tx:
            tx.delete(LEASE, _ID.pack(lease_id))
        return lease.sorted_keys()

    def checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        """Record the leader's view of the remaining TTL (0 clears it); unknown ids are skipped.

        The deadline on the primary is not touched: it already knows the exact one.
        """
        lease = self._leases.get(lease_id)
        if lease is not None and lease.remaining_ttl != remaining_ttl:
            lease.remaining_ttl = remaining_ttl
            self._persist(lease)

    def attach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    # -- queries ---------------------------------------------------------------------------

    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def leases(self) -> list[Lease]:
        """Every lease, the soonest to expire first (ties by id)."""
        return sorted(self._leases.values(), key=lambda lease: (lease.expiry, lease.id))

    @property
    def is_primary(self) -> bool:
        return self._primary

    def time_to_live(self, lease_id: int) -> tuple[Lease, int]:
        """The lease and its remaining whole seconds (truncated, as etcd), on the primary."""
        if not self._primary:
            raise NotPrimary()
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFound()
        return lease, int(lease.remaining(self._clock()))

    # -- the primary (leader) only ---------------------------------------------------------

    def promote(self, extend: float = 0.0) -> None:
        """Become primary: every deadline starts now from its checkpointed remaining TTL.

        With many leases, deadlines that pile up in one second are spread out so at most
        three quarters of the revoke rate fall due per second (etcd's rule), which leaves
        room for the revokes of leases that expire on their own meanwhile.
        """
        now = self._clock()
        self._primary = True
        for lease in self._leases.values():
            lease.expiry = now + extend + lease.starting_ttl()
        if len(self._leases) >= LEASE_REVOKE_RATE:
            self._spread_deadlines(now, extend)
        self._expiry_heap = [(lease.expiry, lease.id) for lease in self._leases.values()]
        heapq.heapify(self._expiry_heap)

    def _spread_deadlines(self, now: float, extend: float) -> None:
        per_second = (3 * LEASE_REVOKE_RATE) // 4
        ordered = self.leases()
        window_start = ordered[0].expiry
        window_end = window_start + 1.0
        in_window = 0
        for lease in ordered:
            if lease.expiry > window_end:
                window_start = lease.expiry
                window_end = window_start + 1.0
                in_window = 1
                continue
            in_window += 1
            if in_window <= per_second:
                continue
            # Push it back by the time the revoke rate needs for the ones before it.
            delay = in_window / per_second - (lease.expiry - window_start)
            window_end = window_start + delay
            lease.expiry = now + extend + lease.starting_ttl() + delay

    def demote(self) -> None:
        """No longer primary: no deadlines here until promoted again."""
        self._primary = False
        for lease in self._leases.values():
            lease.expiry = FOREVER
        self._expiry_heap = []

    def renew(self, lease_id: int) -> Renewal:
        """Restart the lease's deadline from its full TTL (a keep-alive)."""
        if not self._primary:
            raise NotPrimary()
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFound()
        now = self._clock()
        if lease.expiry <= now:
            raise Expired()
        # The heap entry stays at the old deadline; find_expired moves it when it comes due.
        lease.expiry = now + lease.ttl
        return Renewal(lease.ttl, clear_checkpoint=lease.remaining_ttl > 0)

    def find_expired(self, limit: int) -> list[int]:
        """Ids of up to ``limit`` leases past their deadline (each offered again later)."""
        if not self._primary:
            return []
        now = self._clock()
        heap = self._expiry_heap
        found: list[int] = []
        offered: set[int] = set()  # a lease re-granted under the same id has two entries
        while heap and heap[0][0] <= now and len(found) < limit:
            _, lease_id = heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is None or lease_id in offered:
                continue  # revoked meanwhile, or already in this batch
            if lease.expiry > now:
                heapq.heappush(heap, (lease.expiry, lease_id))  # renewed meanwhile
                continue
            heapq.heappush(heap, (now + EXPIRED_RETRY_SECONDS, lease_id))
            found.append(lease_id)
            offered.add(lease_id)
        return found

    def next_deadline(self) -> float:
        """When find_expired may next have something (FOREVER when nothing is due)."""
        return self._expiry_heap[0][0] if self._primary and self._expiry_heap else FOREVER

    def due_checkpoints(self, every: bool = False) -> list[tuple[int, int]]:
        """(lease id, remaining whole seconds, rounded up) worth recording through the log.

        A lease is worth it once its deadline has run down by a second or more and the value
        differs from the one on record; ``every`` also includes those whose remaining time
        is shorter than the checkpoint interval (for a graceful stop).
        """
        if not self._primary:
            return []
        now = self._clock()
        out: list[tuple[int, int]] = []
        for lease in self._leases.values():
            if lease.expiry <= now:
                continue  # its revoke is coming
            remaining = math.ceil(lease.expiry - now)
            if remaining >= lease.ttl or remaining == lease.remaining_ttl:
                continue
            if not every and remaining <= self.checkpoint_interval:
                continue  # expires before the next round; a restart would barely change it
            out.append((lease.id, remaining))
        return out

    # -- persistence -----------------------------------------------------------------------

    def _persist(self, lease: Lease) -> None:
        with self._backend.batch() as tx:
            tx.put(LEASE, _ID.pack(lease.id), _RECORD.pack(lease.ttl, lease.remaining_ttl))
