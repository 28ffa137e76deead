"""etcd's quota check in front of writes (quotaKVServer, quotaLeaseServer).

A Put, a Txn that puts, or a LeaseGrant that would take the database file to
--quota-backend-bytes raises the NOSPACE alarm (through the log) and is refused with
"etcdserver: mvcc: database space exceeded" before it is proposed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from etcdpy import errors
from etcdpy.api.status import Ctx
from etcdpy.server.ops.alarms import LEASE_OVERHEAD, put_cost, txn_cost

if TYPE_CHECKING:
    from etcdpy.server.etcd_server import EtcdServer

Cost = Callable[[Any], int]

GUARDED: dict[str, dict[str, Cost]] = {
    "KV": {"Put": put_cost, "Txn": txn_cost},
    "Lease": {"LeaseGrant": lambda _req: LEASE_OVERHEAD},
}


def guard_services(services: dict[str, object], server: EtcdServer) -> dict[str, object]:
    """Wraps the quota-checked methods of the services in place (no quota: unchanged)."""
    if server.config.quota_bytes is None:
        return services
    for service, methods in GUARDED.items():
        impl = services.get(service)
        if impl is None:
            continue
        for name, cost in methods.items():
            inner = getattr(impl, name, None)
            if inner is not None:
                setattr(impl, name, _guarded(inner, cost, server))
    return services


def _guarded(
    inner: Callable[[Any, Ctx], Awaitable[Any]], cost: Cost, server: EtcdServer
) -> Callable[[Any, Ctx], Awaitable[Any]]:
    async def call(request: Any, context: Ctx) -> Any:
        maintenance = server.maintenance
        if maintenance.over_quota(cost(request)):
            await maintenance.raise_nospace()
            raise errors.NoSpace()
        return await inner(request, context)

    return call
