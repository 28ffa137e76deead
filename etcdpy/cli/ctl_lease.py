"""etcdpyctl's lease operations: grant, revoke, timetolive, list, keep-alive.

``-w json`` writes clientv3's lease response structs as etcdctl does: the response header's
fields inline, then ``ID``/``TTL`` (grant, keep-alive) or ``id``/``ttl`` (timetolive, list).
"""

from __future__ import annotations

import base64
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from etcdpy.cli.ctl_client import EXIT_BAD_CONNECTION, Client, CtlError, rpc_message
from etcdpy.cli.ctl_output import Output, message_to_json
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

__all__ = ["lease_grant", "lease_keep_alive", "lease_list", "lease_revoke", "lease_timetolive"]

LEASE_NOT_FOUND = "etcdserver: requested lease not found"


def _header(resp: Any) -> dict[str, Any]:
    return message_to_json(resp.header)


def lease_grant(client: Client, out: Output, ttl: int) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    try:
        resp = client.call(stub.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=ttl))
    except CtlError as err:
        raise CtlError(f"failed to grant lease ({err})") from None
    if out.is_json:
        out.json({**_header(resp), "ID": resp.ID, "TTL": resp.TTL, "Error": resp.error})
        return
    out.line(f"lease {resp.ID:016x} granted with TTL({resp.TTL}s)")


def lease_revoke(client: Client, out: Output, lease: int) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    try:
        resp = client.call(stub.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=lease))
    except CtlError as err:
        raise CtlError(f"failed to revoke lease ({err})") from None
    if out.is_json:
        out.json(message_to_json(resp))
        return
    out.line(f"lease {lease:016x} revoked")


def lease_timetolive(client: Client, out: Output, lease: int, *, keys: bool = False) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease, keys=keys)
    try:
        resp = client.call(stub.LeaseTimeToLive, request)
    except CtlError as err:
        raise CtlError(str(err), EXIT_BAD_CONNECTION) from None
    if out.is_json:
        attached = [base64.b64encode(k).decode("ascii") for k in resp.keys] if keys else None
        out.json({**_header(resp), "id": resp.ID, "ttl": resp.TTL,
                  "granted-ttl": resp.grantedTTL, "keys": attached})  # fmt: skip
        return
    if resp.grantedTTL == 0 and resp.TTL == -1:
        out.line(f"lease {lease:016x} already expired")
        return
    text = f"lease {lease:016x} granted with TTL({resp.grantedTTL}s), remaining({resp.TTL}s)"
    if keys:
        # Go's %v of a []string: [a b c]
        text += f", attached keys([{' '.join(k.decode('utf-8', 'replace') for k in resp.keys)}])"
    out.line(text)


def lease_list(client: Client, out: Output) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    try:
        resp = client.call(stub.LeaseLeases, rpc_pb2.LeaseLeasesRequest())
    except CtlError as err:
        raise CtlError(str(err), EXIT_BAD_CONNECTION) from None
    if out.is_json:
        out.json({**_header(resp), "leases": [{"id": item.ID} for item in resp.leases]})
        return
    out.line(f"found {len(resp.leases)} leases")
    for item in resp.leases:
        out.line(f"{item.ID:016x}")


def lease_keep_alive(client: Client, out: Output, lease: int, *, once: bool = False) -> None:
    """Renews the lease every TTL/3 seconds until it expires or is revoked (or, with
    ``once``, renews it one time and exits)."""
    out.no_table()
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    requests = _KeepAliveRequests(lease)
    try:
        for resp in stub.LeaseKeepAlive(iter(requests)):
            if resp.TTL <= 0:
                if once:
                    raise CtlError(LEASE_NOT_FOUND, EXIT_BAD_CONNECTION)
                break
            if out.is_json:
                out.json({**_header(resp), "ID": resp.ID, "TTL": resp.TTL})
            else:
                out.line(f"lease {resp.ID:016x} keepalived with TTL({resp.TTL})")
            if once:
                return
            requests.send_after(max(resp.TTL / 3, 0.5))
    except grpc.RpcError as err:
        raise CtlError(rpc_message(err), EXIT_BAD_CONNECTION) from None
    finally:
        requests.close()
    if not out.is_json:
        out.line(f"lease {lease:016x} expired or revoked.")


class _KeepAliveRequests:
    """The request side of the keep-alive stream: one request now, the next when asked."""

    def __init__(self, lease: int) -> None:
        self._lease = lease
        self._queue: queue.Queue[bool] = queue.Queue()
        self._queue.put(True)
        self._timer: threading.Timer | None = None

    def __iter__(self) -> Iterator[rpc_pb2.LeaseKeepAliveRequest]:
        while self._queue.get():
            yield rpc_pb2.LeaseKeepAliveRequest(ID=self._lease)

    def send_after(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._queue.put, args=(True,))
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._queue.put(False)
