"""Leader election on an etcd lease, with etcd's own protocol (``clientv3/concurrency``:
``session.go``, ``election.go``, ``key.go``), so that ``etcdctl elect NAME`` and this class
take part in the same election and agree on its leader.

The protocol:

1. A session: a lease of ``ttl`` seconds, kept alive every third of its TTL. A session whose
   keep-alives stop (the process hangs, the network goes) loses its lease after the TTL, and
   with it its key: the others can go on.
2. Campaign: put ``<name>/<lease id in hex>`` = identity, attached to the lease, if that key has
   not been created (a transaction on its create revision).
3. The leader is the key of the prefix with the lowest create revision. A candidate waits for
   the deletion of the key created just before its own (the last one created before it, not
   the leader: each candidate watches one key, so a leader's departure wakes one candidate,
   not all), then looks again, until none is older.
4. Leadership ends when the session's lease is gone (a keep-alive answers TTL 0, or none has
   succeeded for a whole TTL), when the own key is deleted, or on ``stop``: then the event the
   leader's work was given is set, and the lease revoked, which deletes the key at once.

One deliberate difference with client-go's leaderelection (a Lease object renewed by the
leader): here a lost leader knows it has lost within a keep-alive round, and the next
candidate is woken by etcd's watch instead of polling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from etcdpy.k8s import errors
from etcdpy.observability.logging import get_logger
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.mvccpb import kv_pb2

__all__ = ["ElectionClient", "LeaderElection", "prefix_end"]

# How often the session thread looks at ``stop`` between keep-alives.
POLL_SECONDS = 0.05
# How long run() waits for the leader's callback to return after leadership ended.
CALLBACK_JOIN_SECONDS = 30.0


class _Watch(Protocol):
    def __iter__(self) -> Iterator[rpc_pb2.WatchResponse]: ...

    def cancel(self) -> None: ...


class ElectionClient(Protocol):
    """What an election needs of ``etcdpy.k8s.etcd.EtcdClient``."""

    def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
    ) -> rpc_pb2.TxnResponse: ...

    def lease_grant(self, ttl: int) -> int: ...

    def lease_keepalive_once(self, lease_id: int) -> int: ...

    def lease_revoke(self, lease_id: int) -> None: ...

    def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        progress_notify: bool = False,
        prev_kv: bool = False,
    ) -> Any: ...


def prefix_end(prefix: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd: the first key after every key starting with ``prefix``."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


class LeaderElection:
    """One candidate of the election ``name`` (see the module)."""

    def __init__(
        self,
        client: ElectionClient,
        name: str,
        identity: str,
        *,
        ttl: int = 15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not name:
            raise ValueError("an election needs a name")
        if ttl < 1:
            raise ValueError("the session TTL must be at least 1 second")
        self._client = client
        self.name = name
        self.identity = identity
        self._ttl = ttl
        self._clock = clock
        self._prefix = name.encode() + b"/"
        self._lock = threading.Lock()
        self._watch: _Watch | None = None
        self.key = ""  # this candidate's key, once campaigning
        self._log = get_logger("etcdpy.k8s.leader_election", election=name, identity=identity)

    # -- observing -------------------------------------------------------------------------

    def leader(self) -> tuple[str, str] | None:
        """The leader's key and value (what ``etcdctl elect -l`` prints first), or None."""
        found, _ = self._first_by_create(descending=False, max_create_revision=0)
        if found is None:
            return None
        return found.key.decode(), found.value.decode(errors="replace")

    def _first_by_create(self, *, descending: bool, max_create_revision: int) -> tuple[Any, int]:
        """One key of the prefix by create revision (clientv3's WithFirstCreate/WithLastCreate)
        and the revision it was read at. ``range`` has no sort order, so it goes as the one
        operation of a transaction."""
        order = rpc_pb2.RangeRequest.DESCEND if descending else rpc_pb2.RangeRequest.ASCEND
        request = rpc_pb2.RangeRequest(
            key=self._prefix,
            range_end=prefix_end(self._prefix),
            limit=1,
            sort_order=order,
            sort_target=rpc_pb2.RangeRequest.CREATE,
            max_create_revision=max_create_revision,
        )
        answer = self._client.txn([], [rpc_pb2.RequestOp(request_range=request)])
        kvs = answer.responses[0].response_range.kvs
        return (kvs[0] if kvs else None), int(answer.header.revision)

    # -- running ---------------------------------------------------------------------------

    def run(
        self, on_started_leading: Callable[[threading.Event], None], stop: threading.Event
    ) -> None:
        """Campaign until leader, then call ``on_started_leading(lost)`` in its own thread and
        return when leadership ends (``lost`` is set then: lease gone, key deleted, or ``stop``
        set); the callback is joined, then the lease revoked, before returning. Returns at once
        if ``stop`` is set while campaigning."""
        lease = self._client.lease_grant(self._ttl)
        lost = threading.Event()
        session = threading.Thread(
            target=self._keep_alive, args=(lease, lost, stop), name=f"election-{self.name}"
        )
        session.start()
        worker: threading.Thread | None = None
        try:
            my_revision = self._campaign(lease)
            if not self._wait_for_older(my_revision, lost):
                return
            self._log.info("became leader", key=self.key)
            worker = threading.Thread(
                target=self._lead, args=(on_started_leading, lost), name=f"leader-{self.name}"
            )
            worker.start()
            self._watch_own_key(my_revision, lost)
        finally:
            lost.set()
            self._cancel_watch()
            # The callback ends before the lease is revoked, so that a successor (which starts
            # the moment our key goes) never works beside our last reconciles.
            if worker is not None:
                worker.join(CALLBACK_JOIN_SECONDS)
                if worker.is_alive():
                    self._log.warn("leader callback still running after leadership ended")
            session.join()
            self._revoke(lease)

    def _lead(
        self, on_started_leading: Callable[[threading.Event], None], lost: threading.Event
    ) -> None:
        try:
            on_started_leading(lost)
        except Exception as exc:
            self._log.error("leader callback failed", error=repr(exc))

    def _campaign(self, lease: int) -> int:
        """election.go's Campaign: our key, created with the lease; its create revision."""
        key = self._prefix + f"{lease:x}".encode()
        self.key = key.decode()
        answer = self._client.txn(
            [
                rpc_pb2.Compare(
                    key=key,
                    target=rpc_pb2.Compare.CREATE,
                    result=rpc_pb2.Compare.EQUAL,
                    create_revision=0,
                )
            ],
            [
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(
                        key=key, value=self.identity.encode(), lease=lease
                    )
                )
            ],
            [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
        )
        if answer.succeeded:
            return int(answer.header.revision)
        return int(answer.responses[0].response_range.kvs[0].create_revision)

    def _wait_for_older(self, my_revision: int, lost: threading.Event) -> bool:
        """key.go's waitDeletes: until no key of the prefix is older than ours. False if the
        session ended first."""
        while not lost.is_set():
            older, revision = self._first_by_create(
                descending=True, max_create_revision=my_revision - 1
            )
            if older is None:
                return not lost.is_set()
            self._log.info("waiting for an older candidate to go", older=older.key.decode())
            self._wait_delete(older.key, revision, lost)
        return False

    def _wait_delete(self, key: bytes, revision: int, lost: threading.Event) -> None:
        for event in self._events(key, revision, lost):
            if event.type == kv_pb2.Event.DELETE:
                return

    def _watch_own_key(self, my_revision: int, lost: threading.Event) -> None:
        for event in self._events(self.key.encode(), my_revision + 1, lost):
            if event.type == kv_pb2.Event.DELETE:
                self._log.warn("lost leadership: the election key was deleted", key=self.key)
                lost.set()
                return

    def _events(self, key: bytes, revision: int, lost: threading.Event) -> Iterator[Any]:
        """The key's events from ``revision`` until ``lost``; a watch that breaks is opened again
        (a compacted revision is fine: the caller looks at the store again)."""
        while not lost.is_set():
            watch = self._client.watch(key, start_revision=revision)
            with self._lock:
                self._watch = watch
            if lost.is_set():
                watch.cancel()
            try:
                for response in watch:
                    yield from response.events
                    revision = max(revision, response.header.revision + 1)
            except errors.Gone:
                return
            except errors.StatusError as exc:
                self._log.warn("election watch failed", error=exc.message)
                lost.wait(POLL_SECONDS * 10)
            finally:
                self._cancel_watch()

    def _cancel_watch(self) -> None:
        with self._lock:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    def _keep_alive(self, lease: int, lost: threading.Event, stop: threading.Event) -> None:
        """session.go's keep-alive: every TTL/3; the lease is lost when etcd says so (TTL 0) or
        when no keep-alive succeeded for a whole TTL. Sets ``lost`` then, or on ``stop``."""
        ttl = float(self._ttl)
        last_ok = self._clock()
        next_at = last_ok + ttl / 3
        while not lost.is_set():
            if stop.is_set():
                self._log.info("stopping", key=self.key)
                break
            now = self._clock()
            if now >= next_at:
                try:
                    remaining = self._client.lease_keepalive_once(lease)
                except Exception as exc:
                    if self._clock() - last_ok >= ttl:
                        self._log.warn("lost leadership: keep-alives failed", error=repr(exc))
                        break
                    next_at = now + min(1.0, ttl / 6)
                else:
                    if remaining <= 0:
                        self._log.warn("lost leadership: the session lease expired", lease=lease)
                        break
                    ttl = float(remaining)
                    last_ok = now
                    next_at = now + ttl / 3
            stop.wait(min(POLL_SECONDS, max(0.0, next_at - self._clock())))
        lost.set()
        self._cancel_watch()

    def _revoke(self, lease: int) -> None:
        try:
            self._client.lease_revoke(lease)
        except Exception as exc:  # the lease may be gone already: that is what we wanted
            self._log.info("lease revoke failed", lease=lease, error=repr(exc))
        else:
            self._log.info("resigned", key=self.key)
