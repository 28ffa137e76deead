"""Lease keep-alive streams end in the front-end; their renewals reach the core in batches.

Every keep-alive a front-end receives during one turn of its event loop, from any stream, goes
to the core in one RENEW call (etcdpy.corelink.wire), which renews each lease as the core's own
LeaseKeepAlive would (EtcdServer.lease_renew_many) and answers with each TTL or error. The
responses are built here by the same code as the core's (etcdpy.api.lease.KeepAliveService).
"""

from __future__ import annotations

import asyncio

from etcdpy import errors
from etcdpy.corelink.client import CoreLinkClient
from etcdpy.corelink.errors import link_error
from etcdpy.corelink.wire import (
    LEASE_NOT_FOUND_TTL,
    RENEW,
    decode_renewals,
    encode_lease_ids,
)


class RenewBatcher:
    def __init__(self, link: CoreLinkClient) -> None:
        self._link = link
        self._loop = asyncio.get_running_loop()
        self._ids: list[int] = []
        self._waiters: list[asyncio.Future[int]] = []

    async def renew(self, lease_id: int) -> int:
        """The lease's TTL after a keep-alive; raises LeaseNotFound, or the core's error."""
        future: asyncio.Future[int] = self._loop.create_future()
        if not self._ids:
            self._loop.call_soon(self._send)
        self._ids.append(lease_id)
        self._waiters.append(future)
        return await future

    def _send(self) -> None:
        ids, waiters = self._ids, self._waiters
        self._ids, self._waiters = [], []
        call = self._link.call(RENEW, encode_lease_ids(ids))

        def answered(result: asyncio.Future[tuple[int, bytes]]) -> None:
            try:
                code, payload = result.result()
                if code:
                    raise link_error(code, payload.decode())
                renewals = decode_renewals(payload, len(waiters))
            except Exception as exc:  # the link is gone, or the core refused the call
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                return
            for waiter, (ttl, status, message) in zip(waiters, renewals, strict=True):
                if waiter.done():
                    continue
                if status:
                    waiter.set_exception(link_error(status, message))
                elif ttl == LEASE_NOT_FOUND_TTL:
                    waiter.set_exception(errors.LeaseNotFound())
                else:
                    waiter.set_result(ttl)

        call.add_done_callback(answered)
