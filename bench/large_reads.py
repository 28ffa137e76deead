"""Large reads, as a Kubernetes control plane makes them, against etcd and etcdpy in one run.

For each server (one at a time, fresh data dir): KEYS keys of VALUE bytes under one prefix,
then the best of three of: one Range of the whole prefix, the same keys_only, `etcdctl get
--prefix`, and a paginated list as client-go's pager makes it (limit 500 at one revision, each
page from the last key + "\\0"). Prints a table with the ratios etcdpy/etcd.

    python -m bench.large_reads [--keys 50000] [--value-size 1000] [--targets etcd,etcdpy-n1]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from bench.servers import STARTERS
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc

PREFIX, PREFIX_END = b"/registry/pods/", b"/registry/pods0"
PAGE = 500
REPEATS = 3


def _load(kv: rpc_pb2_grpc.KVStub, keys: int, value_size: int) -> None:
    value = b"v" * value_size
    for start in range(0, keys, 128):
        ops = [
            pb.RequestOp(request_put=pb.PutRequest(key=PREFIX + b"p%07d" % i, value=value))
            for i in range(start, min(start + 128, keys))
        ]
        kv.Txn(pb.TxnRequest(success=ops), timeout=60)


def _paginated(kv: rpc_pb2_grpc.KVStub) -> int:
    key, revision, pages = PREFIX, 0, 0
    while True:
        page = kv.Range(
            pb.RangeRequest(key=key, range_end=PREFIX_END, limit=PAGE, revision=revision),
            timeout=60,
        )
        revision = revision or page.header.revision
        pages += 1
        if not page.more:
            return pages
        key = page.kvs[-1].key + b"\0"


def _best(run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.monotonic()
        run()
        best = min(best, time.monotonic() - started)
    return best * 1000


def measure(target: str, keys: int, value_size: int) -> dict[str, float]:
    etcdctl = shutil.which("etcdctl")
    with tempfile.TemporaryDirectory(prefix="large-reads-") as tmp:
        server = STARTERS[target](Path(tmp))
        try:
            options = [("grpc.max_receive_message_length", -1)]
            with grpc.insecure_channel(server.endpoint, options=options) as channel:
                kv = rpc_pb2_grpc.KVStub(channel)
                _load(kv, keys, value_size)
                whole = pb.RangeRequest(key=PREFIX, range_end=PREFIX_END)
                keys_only = pb.RangeRequest(key=PREFIX, range_end=PREFIX_END, keys_only=True)
                pages = _paginated(kv)
                results = {
                    "range of the whole prefix (ms)": _best(lambda: kv.Range(whole, timeout=60)),
                    "same, keys_only (ms)": _best(lambda: kv.Range(keys_only, timeout=60)),
                    f"paginated list, {pages} pages of {PAGE} (ms)": _best(lambda: _paginated(kv)),
                }
            if etcdctl is not None:
                argv = [
                    etcdctl,
                    f"--endpoints={server.endpoint}",
                    "get",
                    "--prefix",
                    "/registry/pods/",
                ]

                def get_prefix() -> None:
                    subprocess.run(argv, capture_output=True, check=True, timeout=120)

                results["etcdctl get --prefix (ms)"] = _best(get_prefix)
            return results
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=50000)
    parser.add_argument("--value-size", type=int, default=1000)
    parser.add_argument("--targets", default="etcd,etcdpy-n1")
    args = parser.parse_args()
    targets = args.targets.split(",")
    results = {t: measure(t, args.keys, args.value_size) for t in targets}
    rows = list(results[targets[0]])
    print(f"{args.keys:,} keys of {args.value_size} B")
    header = f"{'workload':42}" + "".join(f"{t:>12}" for t in targets)
    if "etcd" in targets:
        header += "".join(f"{t + '/etcd':>18}" for t in targets if t != "etcd")
    print(header)
    for row in rows:
        line = f"{row:42}" + "".join(f"{results[t].get(row, float('nan')):12.0f}" for t in targets)
        if "etcd" in targets:
            base = results["etcd"].get(row)
            for t in targets:
                if t != "etcd" and base:
                    line += f"{results[t].get(row, float('nan')) / base:17.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
