"""A raw Watch stream for tests and tools: send WatchRequests, collect WatchResponses.

Blocking grpc under the hood: a reader thread puts every response on a queue, so a test can
send requests whenever it likes and collect what arrived until the stream goes quiet.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc


class WatchSession:
    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self.responses: queue.Queue[pb.WatchResponse] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self._call: Any = rpc_pb2_grpc.WatchStub(self.channel).Watch(self._iter())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _iter(self) -> Iterator[pb.WatchRequest]:
        while True:
            req = self._requests.get()
            if req is None:
                return
            yield req

    def _read(self) -> None:
        try:
            for resp in self._call:
                self.responses.put(resp)
        except grpc.RpcError as exc:
            self.error = exc

    def send(self, req: pb.WatchRequest) -> None:
        self._requests.put(req)

    def create(self, **fields: Any) -> None:
        self.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(**fields)))

    def cancel(self, watch_id: int) -> None:
        self.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def request_progress(self) -> None:
        self.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def get(self, timeout: float = 5.0) -> pb.WatchResponse:
        return self.responses.get(timeout=timeout)

    def collect(self, quiet: float = 0.4, timeout: float = 10.0) -> list[pb.WatchResponse]:
        """Every response until none arrived for ``quiet`` seconds."""
        out: list[pb.WatchResponse] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                out.append(self.responses.get(timeout=quiet))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(timeout=5)
        self.channel.close()

    def __enter__(self) -> WatchSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
