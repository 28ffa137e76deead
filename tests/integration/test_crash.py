"""kill -9 during a concurrent put load: every acknowledged put survives the restart."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess

pytestmark = pytest.mark.integration

WRITERS = 8
LOAD_SECONDS = 1.5


def _writer(
    endpoint: str, writer: int, acked: dict[bytes, tuple[bytes, int]], stop: threading.Event
) -> None:
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        n = 0
        while not stop.is_set() and n < 100_000:
            key, value = b"w%d/%06d" % (writer, n), b"v%d" % n
            try:
                resp = kv.Put(pb.PutRequest(key=key, value=value), timeout=5)
            except grpc.RpcError:
                return  # the server died: this put was never acknowledged
            acked[key] = (value, resp.header.revision)
            n += 1


@pytest.mark.parametrize("round_", [1, 2])
def test_kill9_loses_no_acknowledged_put(etcdpy_server: MemberProcess, round_: int) -> None:
    acked: dict[bytes, tuple[bytes, int]] = {}
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(etcdpy_server.endpoint, w, acked, stop))
        for w in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS * round_ / 2)
    etcdpy_server.kill9()  # mid-load, no warning
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acked) > 0
    etcdpy_server.start()
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        resp = kv.Range(pb.RangeRequest(key=b"w", range_end=b"x"), timeout=30)
        stored = {kv_.key: (kv_.value, kv_.mod_revision) for kv_ in resp.kvs}
    missing = [key for key in acked if key not in stored]
    assert not missing, f"{len(missing)} acknowledged puts lost, e.g. {missing[:3]}"
    for key, (value, rev) in acked.items():
        assert stored[key] == (value, rev)
