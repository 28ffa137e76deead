"""A ListerWatcher in memory, for the informer's edge cases (a watch that fails, a compaction
at a chosen moment, pages); the informer's tests on real servers sit beside these."""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Iterator
from typing import Any

from etcdpy.k8s import errors
from etcdpy.k8s.types import EventType, ObjectList, WatchEvent, WatchStream

_END = object()


class FakeStream:
    def __init__(self, source: FakeSource) -> None:
        self._source = source
        self._events: queue.Queue[Any] = queue.Queue()

    def push(self, item: Any) -> None:
        self._events.put(item)

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        item = self._events.get(timeout=30)
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, WatchEvent)
        return item

    def stop(self) -> None:
        self._events.put(_END)

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._source.closed(self)


class FakeSource:
    """Objects by key with an etcd-like revision; ``compact()`` makes older watches Gone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revision = 1
        self.compacted = 0
        self.objects: dict[str, dict[str, Any]] = {}
        self.history: list[WatchEvent] = []
        self.streams: list[FakeStream] = []
        self.list_calls: list[dict[str, Any]] = []
        self.watch_calls: list[str] = []
        self.watch_failures: list[BaseException] = []  # raised by the next watch() calls

    # -- changes ---------------------------------------------------------------------------

    def put(self, name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
        with self.lock:
            self.revision += 1
            key = f"{namespace}/{name}"
            kind: EventType = "MODIFIED" if key in self.objects else "ADDED"
            obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": labels,
                    "resourceVersion": str(self.revision),
                },
            }
            self.objects[key] = obj
            self._emit(WatchEvent(kind, copy.deepcopy(obj), str(self.revision)))
            return obj

    def delete(self, name: str, namespace: str = "default") -> None:
        with self.lock:
            self.revision += 1
            obj = self.objects.pop(f"{namespace}/{name}")
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self.revision)
            self._emit(WatchEvent("DELETED", gone, str(self.revision)))

    def bookmark(self) -> None:
        with self.lock:
            self.revision += 1
            mark = {"kind": "ConfigMap", "metadata": {"resourceVersion": str(self.revision)}}
            self._emit(WatchEvent("BOOKMARK", mark, str(self.revision)))

    def _emit(self, event: WatchEvent) -> None:
        self.history.append(event)
        for stream in self.streams:
            stream.push(event)

    def compact(self) -> None:
        with self.lock:
            self.compacted = self.revision

    def break_watches(self, error: BaseException | None = None) -> None:
        """End every open watch: with an error, or as if the server closed it."""
        with self.lock:
            for stream in self.streams:
                stream.push(error if error is not None else _END)

    def closed(self, stream: FakeStream) -> None:
        with self.lock:
            if stream in self.streams:
                self.streams.remove(stream)

    # -- ListerWatcher ---------------------------------------------------------------------

    def list(
        self,
        *,
        limit: int = 0,
        continue_: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ObjectList:
        with self.lock:
            self.list_calls.append({"limit": limit, "continue": continue_})
            keys = sorted(self.objects)
            start = int(continue_) if continue_ else 0
            end = len(keys) if limit == 0 else min(len(keys), start + limit)
            items = [copy.deepcopy(self.objects[k]) for k in keys[start:end]]
            more = str(end) if end < len(keys) else ""
            return ObjectList(items, str(self.revision), more)

    def watch(self, *, resource_version: str = "", allow_bookmarks: bool = True) -> WatchStream:
        with self.lock:
            self.watch_calls.append(resource_version)
            if self.watch_failures:
                raise self.watch_failures.pop(0)
            stream = FakeStream(self)
            start = int(resource_version or self.revision)
            if start < self.compacted:
                stream.push(errors.Gone("too old resource version"))
                return stream
            for event in self.history:
                if int(event.resource_version) > start:
                    stream.push(event)
            self.streams.append(stream)
            return stream
