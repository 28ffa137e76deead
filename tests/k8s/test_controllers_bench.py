"""The informer benchmark (bench/k8s_informer.py) runs, at a tiny scale, against both servers:
its numbers are not checked (timings never decide a test), only that it measures what it says."""

from __future__ import annotations

from bench.k8s_informer import measure
from tests.k8s.conftest import Server


def test_the_informer_benchmark_runs_at_a_tiny_scale(server: Server) -> None:
    results = measure(server.endpoint, server.root, pods=150, seconds=0.5, rate=40)
    assert results["updates delivered"] == 20  # every update reached the informer
    for measure_name in ("initial list (s)", "event latency p50 (ms)", "heap per cached pod (B)"):
        assert results[measure_name] > 0, measure_name
