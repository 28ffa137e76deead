"""An informer, as client-go's shared informer and reflector (``tools/cache/reflector.go``,
``shared_informer.go``, ``delta_fifo.go``) behave: it keeps an indexed cache of one kind in step
with the store and tells event handlers what changed.

1. **List**, in pages of ``page_size`` (continue tokens keep every page at the first page's
   revision); the list's resourceVersion is where the watch starts. The cache takes the list
   as a whole and the handlers hear the difference from what the cache held: ``on_add`` for
   new keys, ``on_update(old, new)`` for keys whose resourceVersion changed, ``on_delete`` with
   a ``DeletedFinalStateUnknown`` for keys that vanished (their delete event was missed);
   unchanged objects are not re-announced.
2. **Watch** from that resourceVersion, with bookmarks; each event updates the cache and the
   resourceVersion (a bookmark only the latter). A watch that ends or fails is opened again
   from the last resourceVersion after a bounded backoff (logged); a compacted resourceVersion
   (``errors.Gone``, 410) means events were lost: relist, and the diff above makes up for them.
3. **Resync**: every ``resync_period`` seconds (0: never) every cached object is announced
   again as ``on_update(obj, obj)``, so that level-based controllers recheck everything.

Each handler has its own thread and an unbounded buffer (client-go's processorListener): a slow
handler delays only itself, never the watch or the other handlers. A handler added after the
start first hears ``on_add`` for everything cached. A handler that raises is logged and goes on.

Objects that cannot be decoded never get here: the store logs and skips them.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from etcdpy.k8s import errors, meta
from etcdpy.k8s.cache import DeletedFinalStateUnknown, Indexer, IndexFunc
from etcdpy.k8s.types import KubeObject, ListerWatcher, WatchEvent, WatchStream
from etcdpy.observability.logging import get_logger

__all__ = [
    "Backoff",
    "DeletedFinalStateUnknown",
    "EventHandler",
    "FuncHandler",
    "Informer",
]

# How long stop() waits for a thread before it gives up on it (a list in flight cannot be
# interrupted; the store's client times it out).
JOIN_TIMEOUT = 15.0


class EventHandler(Protocol):
    """client-go's ResourceEventHandler."""

    def on_add(self, obj: KubeObject) -> None: ...

    def on_update(self, old: KubeObject, new: KubeObject) -> None: ...

    def on_delete(self, obj: KubeObject | DeletedFinalStateUnknown) -> None: ...


class FuncHandler:
    """An EventHandler made of optional callables (client-go's ResourceEventHandlerFuncs)."""

    def __init__(
        self,
        on_add: Callable[[KubeObject], None] | None = None,
        on_update: Callable[[KubeObject, KubeObject], None] | None = None,
        on_delete: Callable[[KubeObject | DeletedFinalStateUnknown], None] | None = None,
    ) -> None:
        self._on_add = on_add
        self._on_update = on_update
        self._on_delete = on_delete

    def on_add(self, obj: KubeObject) -> None:
        if self._on_add is not None:
            self._on_add(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        if self._on_update is not None:
            self._on_update(old, new)

    def on_delete(self, obj: KubeObject | DeletedFinalStateUnknown) -> None:
        if self._on_delete is not None:
            self._on_delete(obj)


@dataclass(frozen=True)
class Backoff:
    """Waits between failed lists and watches: ``initial`` doubling to ``maximum``, each with up
    to ``jitter`` of itself added (client-go's reflector: 800 ms to 30 s, jitter 1.0)."""

    initial: float = 0.8
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 1.0

    def delay(self, failures: int) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(failures, 64))
        return min(self.maximum, base * (1.0 + self.jitter * random.random()))


# A notification: ("add", obj, None), ("update", old, new), ("delete", obj, None).
_Notification = tuple[str, Any, Any]


class _Listener:
    """One handler, its thread and its unbounded buffer (client-go's processorListener)."""

    def __init__(self, handler: EventHandler, informer_name: str) -> None:
        self.handler = handler
        self._buffer: deque[_Notification] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._log = get_logger("etcdpy.k8s.informer", informer=informer_name)
        self._thread = threading.Thread(
            target=self._run, name=f"informer-handler-{informer_name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def push(self, notification: _Notification) -> None:
        with self._cond:
            self._buffer.append(notification)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._buffer)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                kind, first, second = self._buffer.popleft()
            try:
                if kind == "add":
                    self.handler.on_add(first)
                elif kind == "update":
                    self.handler.on_update(first, second)
                else:
                    self.handler.on_delete(first)
            except Exception as exc:  # a handler's bug must not stop the informer
                self._log.error("informer handler failed", notification=kind, error=repr(exc))


class Informer:
    """List, then watch, one kind through a ListerWatcher into an Indexer (see the module)."""

    def __init__(
        self,
        lister_watcher: ListerWatcher,
        *,
        resync_period: float = 0.0,
        indexers: Mapping[str, IndexFunc] | None = None,
        page_size: int = 500,
        name: str = "",
        backoff: Backoff | None = None,
    ) -> None:
        if resync_period < 0:
            raise ValueError("resync_period must not be negative")
        if page_size < 0:
            raise ValueError("page_size must not be negative")
        self._lw = lister_watcher
        self._resync_period = resync_period
        self._page_size = page_size
        self.name = name
        self._backoff = backoff or Backoff()
        self._indexer = Indexer(indexers)
        self._listeners: list[_Listener] = []
        # Held while the cache changes and its notifications are handed out, so that every
        # listener sees the changes in the cache's order.
        self._apply_lock = threading.RLock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: WatchStream | None = None
        self._threads: list[threading.Thread] = []
        self._started = False
        self._resource_version = ""
        self._log = get_logger("etcdpy.k8s.informer", informer=name)

    # -- public ----------------------------------------------------------------------------

    @property
    def indexer(self) -> Indexer:
        return self._indexer

    @property
    def last_sync_resource_version(self) -> str:
        """The resourceVersion the informer has seen up to (the list's, then each event's)."""
        return self._resource_version

    def add_event_handler(
        self,
        handler: EventHandler | None = None,
        *,
        on_add: Callable[[KubeObject], None] | None = None,
        on_update: Callable[[KubeObject, KubeObject], None] | None = None,
        on_delete: Callable[[KubeObject | DeletedFinalStateUnknown], None] | None = None,
    ) -> None:
        """Add a handler (an EventHandler, or the callables). Added after the start, it first
        hears ``on_add`` for every cached object."""
        if handler is None:
            handler = FuncHandler(on_add, on_update, on_delete)
        elif on_add or on_update or on_delete:
            raise TypeError("give a handler or callables, not both")
        listener = _Listener(handler, self.name)
        with self._apply_lock:
            self._listeners.append(listener)
            if self._started:
                for obj in self._indexer.list():
                    listener.push(("add", obj, None))
                listener.start()

    def add_event_handlers(
        self,
        *,
        on_add: Callable[[KubeObject], None] | None = None,
        on_update: Callable[[KubeObject, KubeObject], None] | None = None,
        on_delete: Callable[[KubeObject | DeletedFinalStateUnknown], None] | None = None,
    ) -> None:
        self.add_event_handler(on_add=on_add, on_update=on_update, on_delete=on_delete)

    def start(self) -> None:
        with self._apply_lock:
            if self._started:
                raise RuntimeError("an informer starts once")
            self._started = True
            for listener in self._listeners:
                listener.start()
        self._spawn(self._run_reflector, "reflector")
        if self._resync_period > 0:
            self._spawn(self._run_resync, "resync")

    def stop(self) -> None:
        """End the list/watch, resync and handler threads, and wait for them."""
        self._stop.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.stop()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                self._log.warn("informer thread did not stop", thread=thread.name)
        with self._apply_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.stop()
        for listener in listeners:
            listener.join(JOIN_TIMEOUT)

    def has_synced(self) -> bool:
        """True once the first list is in the cache (and handed to the handlers)."""
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def pending_notifications(self) -> int:
        """Notifications handed out and not yet taken by their handlers."""
        with self._apply_lock:
            return sum(listener.pending() for listener in self._listeners)

    def __enter__(self) -> Informer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- threads ---------------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], what: str) -> None:
        thread = threading.Thread(target=target, name=f"informer-{what}-{self.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run_reflector(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._list_and_replace()
                failures = 0
            except Exception as exc:
                failures += 1
                self._wait_backoff("list failed", exc, failures)
                continue
            self._watch_until_expired()

    def _wait_backoff(self, what: str, exc: BaseException, failures: int) -> None:
        delay = self._backoff.delay(failures - 1)
        self._log.warn(
            what,
            error=repr(exc),
            retry_in_seconds=round(delay, 3),
            resource_version=self._resource_version,
        )
        self._stop.wait(delay)

    def _watch_until_expired(self) -> None:
        """Watch from the last resourceVersion again and again; return (for a relist) when it
        is compacted away, or when the informer stops."""
        failures = 0
        while not self._stop.is_set():
            delivered = 0
            try:
                stream = self._lw.watch(
                    resource_version=self._resource_version, allow_bookmarks=True
                )
                with self._stream_lock:
                    self._stream = stream
                if self._stop.is_set():
                    stream.stop()
                with stream:
                    for event in stream:
                        self._apply_event(event)
                        delivered += 1
            except errors.Gone as exc:
                self._log.info(
                    "watch expired, relisting",
                    error=exc.message,
                    resource_version=self._resource_version,
                )
                return
            except Exception as exc:
                failures = 0 if delivered else failures + 1
                self._wait_backoff("watch failed", exc, max(failures, 1))
                continue
            finally:
                with self._stream_lock:
                    self._stream = None
            if self._stop.is_set():
                break
            # The server ended the watch: open it again; back off if it gave us nothing.
            if delivered:
                failures = 0
            else:
                failures += 1
                self._wait_backoff(
                    "watch ended without events", RuntimeError("watch closed"), failures
                )

    def _run_resync(self) -> None:
        while not self._stop.wait(self._resync_period):
            if not self._synced.is_set():
                continue
            with self._apply_lock:
                for obj in self._indexer.list():
                    self._distribute(("update", obj, obj))

    # -- list and watch --------------------------------------------------------------------

    def _list_all(self) -> tuple[list[KubeObject], str]:
        """Every object and the list's resourceVersion, page by page. An expired continue token
        (the revision was compacted mid-list) falls back to one list without pages, as
        client-go's pager does."""
        items: list[KubeObject] = []
        page = self._lw.list(limit=self._page_size)
        resource_version = page.resource_version
        items.extend(page.items)
        try:
            while page.continue_ and not self._stop.is_set():
                page = self._lw.list(limit=self._page_size, continue_=page.continue_)
                items.extend(page.items)
        except errors.Gone:
            self._log.info("list page expired, listing without pages")
            page = self._lw.list()
            return list(page.items), page.resource_version
        return items, resource_version

    def _list_and_replace(self) -> None:
        items, resource_version = self._list_all()
        if self._stop.is_set():
            return
        with self._apply_lock:
            fresh = {meta.cache_key(obj): obj for obj in items}
            notes: list[_Notification] = []
            for key, obj in fresh.items():
                old = self._indexer.get_by_key(key)
                if old is None:
                    notes.append(("add", obj, None))
                elif meta.resource_version(old) != meta.resource_version(obj):
                    notes.append(("update", old, obj))
            for key in self._indexer.list_keys():
                if key not in fresh:
                    gone = self._indexer.get_by_key(key)
                    notes.append(("delete", DeletedFinalStateUnknown(key, gone), None))
            self._indexer.replace(fresh.values())
            self._resource_version = resource_version
            for note in notes:
                self._distribute(note)
            self._synced.set()
        self._log.debug(
            "listed", objects=len(fresh), changes=len(notes), resource_version=resource_version
        )

    def _apply_event(self, event: WatchEvent) -> None:
        with self._apply_lock:
            if event.type == "BOOKMARK":
                pass
            elif event.type == "DELETED":
                self._indexer.delete(meta.cache_key(event.object))
                self._distribute(("delete", event.object, None))
            else:  # ADDED, MODIFIED: client-go keys on what the cache holds, not the type
                old = self._indexer.put(event.object)
                if old is None:
                    self._distribute(("add", event.object, None))
                else:
                    self._distribute(("update", old, event.object))
            if event.resource_version:
                self._resource_version = event.resource_version

    def _distribute(self, notification: _Notification) -> None:
        for listener in self._listeners:
            listener.push(notification)
