"""Summaries of a benchmark run: latency percentiles, the results table, the progress bar."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TextIO


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(slots=True)
class Summary:
    op: str
    total: int
    ok: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    clients: int
    conns: int
    procs: int
    error_codes: dict[str, int] = field(default_factory=dict)
    txn_succeeded: int = 0
    txn_failed: int = 0
    client_cpu_us_per_req: float = 0.0  # the generator's own CPU cost (is it the bottleneck?)

    def json_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def summarize(
    *,
    op: str,
    total: int,
    latencies: list[float],
    error_codes: dict[str, int],
    seconds: float,
    clients: int,
    conns: int,
    procs: int,
    txn_succeeded: int = 0,
    txn_failed: int = 0,
    client_cpu_seconds: float = 0.0,
) -> Summary:
    latencies.sort()
    ok = len(latencies)
    errors = sum(error_codes.values())
    return Summary(
        op=op,
        total=total,
        ok=ok,
        errors=errors,
        seconds=round(seconds, 6),
        rps=round(ok / seconds, 1) if seconds > 0 else 0.0,  # successful requests only
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p90_ms=round(percentile(latencies, 0.90) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        max_ms=round((latencies[-1] if latencies else 0.0) * 1000, 3),
        clients=clients,
        conns=conns,
        procs=procs,
        error_codes=dict(sorted(error_codes.items())),
        txn_succeeded=txn_succeeded,
        txn_failed=txn_failed,
        client_cpu_us_per_req=round(client_cpu_seconds * 1e6 / max(1, ok + errors), 1),
    )


def format_table(s: Summary) -> str:
    rows = [
        ("total", str(s.total)),
        ("ok", str(s.ok)),
        ("errors", str(s.errors) + (f"  {s.error_codes}" if s.error_codes else "")),
        ("seconds", f"{s.seconds:.3f}"),
        ("req/s", f"{s.rps:.1f}"),
        ("latency p50", f"{s.p50_ms:.3f} ms"),
        ("latency p90", f"{s.p90_ms:.3f} ms"),
        ("latency p99", f"{s.p99_ms:.3f} ms"),
        ("latency max", f"{s.max_ms:.3f} ms"),
    ]
    rows.append(("client CPU/req", f"{s.client_cpu_us_per_req:.1f} us"))
    if s.op == "txn-put":
        rows.append(("txn succeeded", str(s.txn_succeeded)))
        rows.append(("txn failed", str(s.txn_failed)))
    title = f"{s.op}: {s.clients} clients, {s.conns} conns, {s.procs} procs"
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines)


class ProgressBar:
    """A one-line bar redrawn in place on a terminal; silent elsewhere (logs stay clean)."""

    def __init__(self, total: int, out: TextIO, enabled: bool, width: int = 40) -> None:
        self._total = max(1, total)
        self._out = out
        self._enabled = enabled
        self._width = width

    def update(self, done: int, elapsed_s: float) -> None:
        if not self._enabled:
            return
        done = min(done, self._total)
        filled = self._width * done // self._total
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        bar = "#" * filled + "." * (self._width - filled)
        pct = 100 * done // self._total
        self._out.write(f"\r[{bar}] {pct:3d}% {done}/{self._total} {rate:,.0f} req/s ")
        self._out.flush()

    def close(self) -> None:
        if self._enabled:
            self._out.write("\n")
            self._out.flush()
