"""The raft request id of the request being served, for log lines written far from where it
was assigned (etcd logs it with slow requests and failed applies).

``EtcdServer.propose`` sets it once per proposal (one context-variable write); the gRPC layer
reads it only when it logs a slow request. Each gRPC call runs in its own task, with its own
copy of the context, so ids never leak from one call to another.
"""

from __future__ import annotations

from contextvars import ContextVar

RAFT_REQUEST_ID: ContextVar[int] = ContextVar("raft_request_id", default=0)
