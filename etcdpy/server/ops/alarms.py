"""Alarms (NOSPACE, CORRUPT): raised and cleared through the log, kept in the backend's alarm
bucket, and gating the applier as etcd's capped and corrupt appliers do.

- NOSPACE: raised when a write would take the database past --quota-backend-bytes. While it is
  active every member refuses puts, txns that put, and lease grants with
  "etcdserver: mvcc: database space exceeded"; reads, deletes and compactions go on, so an
  operator can compact, defragment and disarm.
- CORRUPT: every request but alarm changes is refused with "etcdserver: corrupt cluster".
"""

from __future__ import annotations

from typing import Any

import structlog

from etcdpy import errors
from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

log = structlog.get_logger(__name__)

NONE, NOSPACE, CORRUPT = pb.NONE, pb.NOSPACE, pb.CORRUPT
GET, ACTIVATE, DEACTIVATE = (
    pb.AlarmRequest.GET,
    pb.AlarmRequest.ACTIVATE,
    pb.AlarmRequest.DEACTIVATE,
)

# etcd's quota estimates (etcdserver/quota.go): bytes a key's metadata and a lease cost.
KV_OVERHEAD = 256
LEASE_OVERHEAD = 64


def _key(member_id: int, alarm: int) -> bytes:
    return pb.AlarmMember(memberID=member_id, alarm=alarm).SerializeToString()  # type: ignore[arg-type]


def put_cost(req: pb.PutRequest) -> int:
    return KV_OVERHEAD + len(req.key) + len(req.value)


def txn_cost(req: pb.TxnRequest) -> int:
    cost = 0
    for op in (*req.success, *req.failure):
        if op.HasField("request_put"):
            cost += put_cost(op.request_put)
    return cost


def alarm_text(member: pb.AlarmMember) -> str:
    """An alarm as etcd lists it in ``StatusResponse.errors`` (gogoproto's compact text form):
    fields at their zero value are left out and each field ends with a space, so
    ``memberID:3290535873941082471 alarm:NOSPACE `` and, raised for member 0, ``alarm:CORRUPT ``."""
    text = f"memberID:{member.memberID} " if member.memberID else ""
    if member.alarm:
        text += f"alarm:{pb.AlarmType.Name(member.alarm)} "
    return text


class AlarmStore:
    """Active alarms by (member id, type); loaded from and saved to the alarm bucket."""

    def __init__(self, backend: Backend) -> None:
        self._alarms: dict[tuple[int, int], None] = {}
        self._load(backend)

    def _load(self, backend: Backend) -> None:
        self._backend = backend
        self._alarms = {}
        with backend.read() as tx:
            for key, _value in tx.items(bk.ALARM):
                m = pb.AlarmMember.FromString(key)
                self._alarms[(m.memberID, m.alarm)] = None

    def rebind(self, backend: Backend) -> None:
        """The backend file was replaced (defrag, snapshot): read the alarms again."""
        self._load(backend)

    # -- queries -------------------------------------------------------------------------

    def get(self, alarm: int = NONE) -> list[pb.AlarmMember]:
        return [
            pb.AlarmMember(memberID=member, alarm=kind)  # type: ignore[arg-type]
            for member, kind in sorted(self._alarms)
            if alarm == NONE or kind == alarm
        ]

    def active(self, alarm: int) -> bool:
        return any(kind == alarm for _member, kind in self._alarms)

    def active_names(self) -> list[str]:
        return sorted({pb.AlarmType.Name(kind) for _member, kind in self._alarms})  # type: ignore[arg-type]

    # -- apply (inside the apply batch) --------------------------------------------------

    def apply(self, req: pb.AlarmRequest) -> pb.AlarmResponse:
        resp = pb.AlarmResponse()
        if req.action == GET:
            resp.alarms.extend(self.get(req.alarm))
        elif req.action == ACTIVATE:
            if req.alarm == NONE:
                return resp
            entry = (req.memberID, req.alarm)
            first = not self.active(req.alarm)
            if entry not in self._alarms:
                self._alarms[entry] = None
                with self._backend.batch() as tx:
                    tx.put(bk.ALARM, _key(*entry), b"")
            resp.alarms.add(memberID=req.memberID, alarm=req.alarm)
            if first:
                log.warning(
                    "alarm raised",
                    alarm=pb.AlarmType.Name(req.alarm),
                    **{"from": f"{req.memberID:x}"},
                )
        elif req.action == DEACTIVATE:
            entry = (req.memberID, req.alarm)
            if entry not in self._alarms:
                return resp
            del self._alarms[entry]
            with self._backend.batch() as tx:
                tx.delete(bk.ALARM, _key(*entry))
            resp.alarms.add(memberID=req.memberID, alarm=req.alarm)
            if not self.active(req.alarm):
                log.warning("alarm disarmed", alarm=pb.AlarmType.Name(req.alarm))
        return resp

    def intercept(self, req: Any) -> pb.AlarmResponse | errors.EtcdError | None:
        """An InternalRaftRequest's answer if it is an alarm request or an active alarm
        refuses it; None: the applier goes on with it."""
        if req.HasField("alarm"):
            return self.apply(req.alarm)
        if not self._alarms:  # the common case
            return None
        if self.active(CORRUPT):
            return errors.Corrupt()
        if self.active(NOSPACE):
            if req.HasField("put") or req.HasField("lease_grant"):
                return errors.NoSpace()
            if req.HasField("txn") and txn_cost(req.txn) > 0:
                return errors.NoSpace()
        return None
