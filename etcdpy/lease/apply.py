"""Applying the lease requests of the log, and keeping the lessor's key sets in step with puts.

Called by the Applier inside the apply batch, so the lease records, the deleted keys of a
revoke and the applied index commit together.
"""

from __future__ import annotations

from typing import Any

from etcdpy.lease.lessor import Lessor
from etcdpy.mvcc.kvstore import KVStore
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.mvccpb import kv_pb2 as mvccpb


def apply(kv: KVStore, lessor: Lessor, req: Any, index: int) -> Any:
    """The response for a lease request, or None when ``req`` is not one."""
    if req.HasField("lease_grant"):
        return grant(kv, lessor, req.lease_grant)
    if req.HasField("lease_revoke"):
        return revoke(kv, lessor, req.lease_revoke, index)
    if req.HasField("lease_checkpoint"):
        return checkpoint(kv, lessor, req.lease_checkpoint)
    return None


def grant(kv: KVStore, lessor: Lessor, req: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
    lease = lessor.grant(req.ID, req.TTL)  # EtcdError for a taken id or a TTL too large
    resp = pb.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl)
    resp.header.revision = kv.current_revision
    return resp


def revoke(
    kv: KVStore, lessor: Lessor, req: pb.LeaseRevokeRequest, index: int
) -> pb.LeaseRevokeResponse:
    keys = lessor.revoke(req.ID)  # sorted, so every member deletes in the same order
    if keys:
        # One write transaction: every attached key goes in the same revision.
        with kv.write(consistent_index=index) as txn:
            for key in keys:
                txn.delete_range(key)
    resp = pb.LeaseRevokeResponse()
    resp.header.revision = kv.current_revision
    return resp


def checkpoint(
    kv: KVStore, lessor: Lessor, req: pb.LeaseCheckpointRequest
) -> pb.LeaseCheckpointResponse:
    for cp in req.checkpoints:
        lessor.checkpoint(cp.ID, cp.remaining_TTL)
    resp = pb.LeaseCheckpointResponse()
    resp.header.revision = kv.current_revision
    return resp


def track_put(lessor: Lessor, key: bytes, lease: int, replaced: mvccpb.KeyValue | None) -> None:
    """A put moves the key to its new lease (or to none: a put without a lease detaches)."""
    old = replaced.lease if replaced is not None else 0
    if old == lease:
        return
    if old:
        lessor.detach(old, key)
    if lease:
        lessor.attach(lease, key)


def track_deletes(lessor: Lessor, deleted: list[mvccpb.KeyValue]) -> None:
    for kv in deleted:
        if kv.lease:
            lessor.detach(kv.lease, kv.key)
