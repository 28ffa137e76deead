"""Request ids in the logs, as etcd writes them: the slow-request warning of the gRPC layer names
the raft request id of the call, and a request that fails to apply is logged with its id."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from etcdpy import errors
from etcdpy.api import grpc_metrics
from etcdpy.mvcc import Backend, KVStore
from etcdpy.observability.metrics import GrpcStats
from etcdpy.observability.request_ids import RAFT_REQUEST_ID
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.applier import Applier


def test_slow_request_warning_names_the_raft_request_id_of_its_own_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(grpc_metrics, "SLOW_REQUEST_SECONDS", 0.0)  # every call is "slow"
    totals = GrpcStats()
    stats = totals.method("etcdserverpb.KV", "Put", "unary")

    async def behavior(request: bytes, context: Any) -> bytes:
        request_id = int.from_bytes(request)
        if request_id:
            RAFT_REQUEST_ID.set(request_id)  # what EtcdServer.propose does
        return b"ok"

    call = grpc_metrics._count_unary(behavior, stats, totals)  # the Metrics interceptor's layer

    async def one(request: bytes) -> None:
        await call(request, cast(Any, None))

    async def calls() -> None:
        # every gRPC call is a task of its own: one call's id never reaches the next call
        for request_id in (0x1F2E, 0, 0x3D):
            await asyncio.create_task(one(request_id.to_bytes(2)))

    with capture_logs() as logs:
        asyncio.run(calls())
    slow = [e for e in logs if e["event"] == "request stats"]
    assert [e["request_id"] for e in slow] == ["1f2e", None, "3d"]
    assert slow[0]["method"] == "/etcdserverpb.KV/Put"


def test_a_request_that_fails_to_apply_is_logged_with_its_id(tmp_path: Path) -> None:
    backend = Backend(str(tmp_path / "db"), map_size=64 * 1024**2)
    try:
        kv = KVStore(backend)
        applier = Applier(kv)  # no lessor: every lease is unknown
        req = internalpb.InternalRaftRequest(put=pb.PutRequest(key=b"k", value=b"v", lease=7))
        req.header.ID = 0xBEEF
        ok = internalpb.InternalRaftRequest(put=pb.PutRequest(key=b"k", value=b"v"))
        ok.header.ID = 0xCAFE
        with capture_logs() as logs, kv.batch():
            result = applier.apply(req, 1)
            applier.apply(ok, 2)
        assert isinstance(result, errors.LeaseNotFound)
        failed = [e for e in logs if e["event"] == "failed to apply request"]
        assert failed == [
            {
                "event": "failed to apply request",
                "log_level": "warning",
                "request_id": "beef",
                "request": "put",
                "error": "etcdserver: requested lease not found",
            }
        ]
    finally:
        backend.close()
