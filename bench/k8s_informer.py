"""An informer over many pods, against etcd 3.4 and etcdpy (one member each) in one run.

For each target (one at a time, fresh data dir): PODS pods of about 2 KB, as the API server
stores them (JSON under /registry/pods/<namespace>/<name>), loaded in Txns of 128 puts; then

- the informer's initial list (pages of 500 at one revision, decoded into its cache);
- memory per cached object: the growth of this process's RSS over the list, and, in a second
  informer run under tracemalloc, the Python heap it holds per object;
- event delivery latency: a writer updates RATE pods/s for SECONDS (raw etcd puts, each value
  stamped with its send time); the informer's update handler records when each arrives;
  p50/p99, and lag growth (the slope of latency over the run, ms per s: > 0 means the informer
  falls behind).

Prints a table with etcdpy/etcd ratios. Not a test: timings never decide pass or fail.

    python -m bench.k8s_informer [--pods 100000] [--seconds 20] [--rate 1000] [--scale 0.01]
                                 [--targets etcd,etcdpy]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.servers import STARTERS, StartFailed
from etcdpy.k8s.etcd import EtcdClient
from etcdpy.k8s.informer import Informer
from etcdpy.k8s.store import ObjectStore
from etcdpy.observability.logging import configure_logging
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

ROOT = "/registry"
NAMESPACES = 10
TXN_OPS = 128
PAGE_SIZE = 500
SENT_ANNOTATION = "bench.etcdpy.io/sent"
POD_BYTES = 2048
NO_RATIO = {"updates delivered", "lag growth (ms/s)"}  # a ratio of these means nothing


def pod_json(index: int, sent: float = 0.0) -> tuple[str, str, bytes]:
    """(namespace, name, value): a pod much like a real one, padded to about POD_BYTES."""
    namespace, name = f"ns-{index % NAMESPACES}", f"pod-{index:07d}"
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"00000000-0000-4000-8000-{index:012d}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": f"app-{index % 100}", "pod-template-hash": "5d8f9b7c6d"},
            "annotations": {SENT_ANNOTATION: repr(sent)},
        },
        "spec": {
            "nodeName": f"node-{index % 50}",
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.9",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
        },
        "status": {"phase": "Running", "podIP": f"10.0.{index // 250 % 250}.{index % 250}"},
    }
    body = json.dumps(pod, separators=(",", ":"))
    padding = max(0, POD_BYTES - len(body) - 40)
    pod["metadata"]["annotations"]["bench.etcdpy.io/padding"] = "x" * padding
    return namespace, name, json.dumps(pod, separators=(",", ":")).encode()


def _key(root: str, namespace: str, name: str) -> bytes:
    return f"{root}/pods/{namespace}/{name}".encode()


def load(client: EtcdClient, root: str, pods: int) -> float:
    """Seconds to put ``pods`` pods, TXN_OPS per Txn."""
    started = time.monotonic()
    for start in range(0, pods, TXN_OPS):
        ops = []
        for index in range(start, min(start + TXN_OPS, pods)):
            namespace, name, value = pod_json(index)
            ops.append(
                pb.RequestOp(
                    request_put=pb.PutRequest(key=_key(root, namespace, name), value=value)
                )
            )
        client.txn([], ops)
    return time.monotonic() - started


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _sync(
    store: ObjectStore, pods: int, on_update: Callable[[Any, Any], None] | None = None
) -> tuple[Informer, float]:
    informer = Informer(store.lister_watcher("pods"), page_size=PAGE_SIZE, name="bench-pods")
    if on_update is not None:
        informer.add_event_handlers(on_update=on_update)
    started = time.monotonic()
    informer.start()
    if not informer.wait_for_sync(600):
        informer.stop()
        raise TimeoutError("the informer did not sync in 600 s")
    elapsed = time.monotonic() - started
    cached = len(informer.indexer.list_keys())
    if cached != pods:
        informer.stop()
        raise AssertionError(f"the informer holds {cached} pods, {pods} were loaded")
    return informer, elapsed


def _heap_per_object(store: ObjectStore, pods: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        informer, _ = _sync(store, pods)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        informer.stop()
    finally:
        tracemalloc.stop()
    return held / max(pods, 1)


def _write_updates(
    client: EtcdClient, root: str, pods: int, seconds: float, rate: float
) -> tuple[int, float]:
    """Update pods at ``rate``/s for ``seconds`` from a few threads; returns the updates sent
    and the seconds it took (more than ``seconds`` when the server cannot keep up)."""
    total = int(seconds * rate)
    started = time.monotonic()

    def put(sequence: int) -> None:
        due = started + sequence / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        namespace, name, value = pod_json(sequence % pods, sent=time.monotonic())
        client.put(_key(root, namespace, name), value)

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-writer") as pool:
        list(pool.map(put, range(total)))
    return total, time.monotonic() - started


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of latency (ms) over send time (s)."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def measure(endpoint: str, root: str, pods: int, seconds: float, rate: float) -> dict[str, float]:
    """Everything but starting the server: usable against any endpoint (the smoke test)."""
    client = EtcdClient.connect(endpoint, timeout=120.0)
    store = ObjectStore(client, root=root, typed=False)
    try:
        results: dict[str, float] = {"load (s)": load(client, root, pods)}
        gc.collect()
        rss_before = _rss()
        arrivals: list[tuple[float, float]] = []  # (sent, latency ms)
        lock = threading.Lock()
        run_started = [0.0]

        def on_update(old: Any, new: Any) -> None:
            now = time.monotonic()
            sent = float(
                (new.get("metadata") or {}).get("annotations", {}).get(SENT_ANNOTATION) or 0
            )
            if sent > 0:
                with lock:
                    arrivals.append((sent - run_started[0], (now - sent) * 1000))

        informer, list_seconds = _sync(store, pods, on_update)
        results["initial list (s)"] = list_seconds
        results["RSS per cached pod (B)"] = (_rss() - rss_before) / max(pods, 1)
        try:
            run_started[0] = time.monotonic()
            sent, took = _write_updates(client, root, pods, seconds, rate)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if len(arrivals) >= sent:
                        break
                time.sleep(0.05)
        finally:
            informer.stop()
        with lock:
            latencies = sorted(ms for _, ms in arrivals)
            points = list(arrivals)
        results["updates sent/s"] = sent / max(took, 1e-9)
        results["updates delivered"] = float(len(latencies))
        if latencies:
            results["event latency p50 (ms)"] = latencies[len(latencies) // 2]
            results["event latency p99 (ms)"] = latencies[
                min(len(latencies) - 1, int(len(latencies) * 0.99))
            ]
        results["lag growth (ms/s)"] = _slope(points)
        del informer
        results["heap per cached pod (B)"] = _heap_per_object(store, pods)
        return results
    finally:
        store.close()


def run_target(target: str, pods: int, seconds: float, rate: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="k8s-informer-") as tmp:
        server = STARTERS[target](Path(tmp))
        try:
            return measure(server.endpoint, ROOT, pods, seconds, rate)
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="pod updates per second")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies --pods and --rate")
    parser.add_argument("--targets", default="etcd,etcdpy")
    args = parser.parse_args(argv)
    configure_logging("warn")  # the informers' debug lines would bury the table
    pods = max(10, int(args.pods * args.scale))
    rate = max(1.0, args.rate * args.scale)
    targets = args.targets.split(",")
    results: dict[str, dict[str, float]] = {}
    for target in targets:
        try:
            results[target] = run_target(target, pods, args.seconds, rate)
        except StartFailed as exc:
            print(f"{target}: skipped ({exc})")
    print(f"{pods:,} pods of ~{POD_BYTES} B; {rate:g} updates/s for {args.seconds:g} s")
    ran = [t for t in targets if t in results]
    rows = list(dict.fromkeys(row for t in ran for row in results[t]))
    header = f"{'measure':28}" + "".join(f"{t:>12}" for t in ran)
    others = [t for t in ran if t != "etcd"] if "etcd" in ran else []
    header += "".join(f"{t + '/etcd':>16}" for t in others)
    print(header)
    for row in rows:
        line = f"{row:28}" + "".join(f"{results[t].get(row, float('nan')):12.3f}" for t in ran)
        base = results["etcd"].get(row) if others and row not in NO_RATIO else None
        for t in others:
            value = results[t].get(row)
            line += f"{value / base:15.2f}x" if base and value is not None else f"{'-':>16}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
