"""gRPC counters of the calls a front-end answers itself (reads from its replica), carried to
the core, whose /metrics is the one etcd's users scrape.

The core asks when it is scraped (a STATS record, etcdpy.corelink.wire); the front-end answers
with what it counted since it last answered and starts again from zero, and the core adds that
to its own counters: a scrape sees every call answered before it began.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from etcdpy.mvcc.kvstore import KVStore
from etcdpy.observability.metrics import GrpcStats, ServerMetrics
from etcdpy.server.ops.view import watcher_counts


@dataclass(slots=True)
class ReadCounts:
    """Range calls a front-end answered from its replica, and those it handed to the core."""

    local: int = 0
    forwarded: int = 0


def take_counts(stats: GrpcStats, reads: ReadCounts, watch_store: object = None) -> bytes:
    """The counts since the last call, as JSON; the counters start again from zero (in place:
    the instrumented handlers hold references to the lists)."""
    methods = []
    for (service, method), st in stats.methods.items():
        if not st.started:
            continue
        methods.append(
            [
                service,
                method,
                st.rpc_type,
                st.started,
                list(st.handled),
                st.msg_received,
                st.msg_sent,
                list(st.handling.counts),
                st.handling.total,
            ]
        )
        st.started = st.msg_received = st.msg_sent = 0
        st.handled[:] = [0] * len(st.handled)
        st.handling.counts[:] = [0] * len(st.handling.counts)
        st.handling.total = 0.0
    payload: dict[str, object] = {
        "methods": methods,
        "bytes": [stats.received_bytes, stats.sent_bytes],
        "reads": [reads.local, reads.forwarded],
        "pid": os.getpid(),
    }
    watchers = watcher_counts(watch_store)
    if watchers:
        payload["watchers"] = [watchers["watchers"], watchers["slow_watchers"]]
    if isinstance(watch_store, KVStore):  # the replica's store operations (etcd_mvcc_*)
        payload["mvcc"] = watch_store.counts.take()
    stats.received_bytes = stats.sent_bytes = 0
    reads.local = reads.forwarded = 0
    return json.dumps(payload).encode()


def add_counts(metrics: ServerMetrics, payload: bytes) -> None:
    """Add a front-end's counts (take_counts) to the core's counters; its watcher gauges
    replace the ones it sent before."""
    stats = metrics.grpc
    data = json.loads(payload)
    for service, method, rpc_type, started, handled, received, sent, buckets, total in data[
        "methods"
    ]:
        st = stats.method(service, method, rpc_type)
        st.started += started
        for code, count in enumerate(handled[: len(st.handled)]):
            st.handled[code] += count
        st.msg_received += received
        st.msg_sent += sent
        for i, count in enumerate(buckets[: len(st.handling.counts)]):
            st.handling.counts[i] += count
        st.handling.total += total
    received_bytes, sent_bytes = data["bytes"]
    stats.received_bytes += received_bytes
    stats.sent_bytes += sent_bytes
    local, forwarded = data["reads"]
    metrics.frontend_reads_local += local
    metrics.frontend_reads_forwarded += forwarded
    for i, count in enumerate(data.get("mvcc", ())):
        metrics.frontend_mvcc[i] += count
    if "watchers" in data:
        watchers, slow = data["watchers"]
        metrics.frontend_watchers[int(data["pid"])] = (watchers, slow)
