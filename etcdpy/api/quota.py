"""etcd's quota check in front of writes (quotaKVServer, quotaLeaseServer), a layer of the
pipeline.

A Put, a Txn that puts, or a LeaseGrant that would take the database file to
--quota-backend-bytes raises the NOSPACE alarm (through the log) and is refused with
"etcdserver: mvcc: database space exceeded" before it is proposed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from etcdpy import errors
from etcdpy.api.pipeline import Interceptor, Method, Unary
from etcdpy.call import CallContext
from etcdpy.server.ops.alarms import LEASE_OVERHEAD, put_cost, txn_cost

Cost = Callable[[Any], int]

GUARDED: dict[tuple[str, str], Cost] = {
    ("KV", "Put"): put_cost,
    ("KV", "Txn"): txn_cost,
    ("Lease", "LeaseGrant"): lambda _req: LEASE_OVERHEAD,
}


class QuotaGate(Protocol):
    def over_quota(self, cost: int) -> bool: ...

    async def raise_nospace(self) -> None: ...


class QuotaMember(Protocol):
    @property
    def maintenance(self) -> QuotaGate: ...


class Quota(Interceptor):
    """``enabled`` False (no --quota-backend-bytes): every call is handed back unchanged."""

    def __init__(self, member: QuotaMember, enabled: bool) -> None:
        self._member = member
        self._enabled = enabled

    def unary(self, method: Method, call: Unary) -> Unary:
        cost = GUARDED.get(method.key)
        if cost is None or not self._enabled or not method.implemented:
            return call
        member = self._member

        async def guarded(request: Any, context: CallContext) -> Any:
            maintenance = member.maintenance
            if maintenance.over_quota(cost(request)):
                await maintenance.raise_nospace()
                raise errors.NoSpace()
            return await call(request, context)

        return guarded
