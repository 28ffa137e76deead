"""`python -m bench.secure`: what client TLS and auth cost, etcdpy beside etcd 3.4 in one run.

Each target (etcd, etcdpy with its default front-end processes) is started fresh in each mode:

- plain: no TLS, no auth (the figures of `make bench`);
- mtls: https client URL, mutual TLS (--client-cert-auth: a Kubernetes API server's set-up);
- jwt: auth on with JWT tokens (RS256), plain transport; the load runs as a non-root user
  whose role may read and write every key, so each request meets the permission check;
- mtls+jwt: both.

Workloads (by `etcdpy benchmark`, 64 clients on 8 connections): put, and linearizable range
of one key. The table gives req/s and the server's CPU per request for each target and mode,
the ratio etcdpy/etcd per mode, and each target's cost of a mode as its plain rate over the
mode's rate.

    python -m bench.secure [--scale 0.3] [--targets etcd,etcdpy] [--modes plain,mtls,jwt]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.run import RESULTS_DIR, VALUE_SIZE
from bench.servers import READY_TIMEOUT_S, Server, StartFailed
from etcdpy.pb.authpb import auth_pb2
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member
from etcdpy.tools.benchmark import parse_args
from etcdpy.tools.benchmark import run as run_benchmark

MODES = ("plain", "mtls", "jwt", "mtls+jwt")
RANGE_KEY = b"bench-range-key"
ROOT_PASSWORD = "root-pw"
BENCH_USER = "bench"
BENCH_PASSWORD = "bench-pw"


@dataclass(frozen=True)
class Files:
    """The certificates and JWT keys every target of one run shares."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    jwt_private: Path
    jwt_public: Path

    @classmethod
    def make(cls, directory: Path) -> Files:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("bench-client", common_name=BENCH_USER)
        files = cls(
            ca=directory / "ca.pem",
            server_cert=directory / "server.pem",
            server_key=directory / "server-key.pem",
            client_cert=directory / "client.pem",
            client_key=directory / "client-key.pem",
            jwt_private=directory / "jwt.key",
            jwt_public=directory / "jwt.pub",
        )
        ca.cert_pem.write_to_path(str(files.ca))
        server.cert_chain_pems[0].write_to_path(str(files.server_cert))
        server.private_key_pem.write_to_path(str(files.server_key))
        client.cert_chain_pems[0].write_to_path(str(files.client_cert))
        client.private_key_pem.write_to_path(str(files.client_key))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files.jwt_private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files.jwt_public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return files


def _flags(mode: str, files: Files) -> list[str]:
    flags: list[str] = []
    if "mtls" in mode:
        flags += [
            "--cert-file", str(files.server_cert), "--key-file", str(files.server_key),
            "--trusted-ca-file", str(files.ca), "--client-cert-auth",
        ]  # fmt: skip
    if "jwt" in mode:
        flags += [
            "--auth-token",
            f"jwt,pub-key={files.jwt_public},priv-key={files.jwt_private},"
            "sign-method=RS256,ttl=10m",
        ]
    return flags


def _start(target: str, mode: str, files: Files, workdir: Path) -> tuple[MemberProcess, Server]:
    make = etcd_member if target == "etcd" else etcdpy_member
    try:
        member = make(workdir / f"{target}-{mode.replace('+', '-')}", name="bench")
    except FileNotFoundError as exc:
        raise StartFailed(str(exc)) from exc
    member.extra_args = _flags(mode, files)
    if "mtls" in mode:  # an https client URL, probed with the client certificate
        member.client_scheme = "https"
        member.client_tls = (files.ca, files.client_cert, files.client_key)
    member.data_dir.parent.mkdir(parents=True, exist_ok=True)
    member.start(wait=False)
    assert member.proc is not None and member.log_path is not None
    server = Server(target, member.endpoint, member.proc, member.log_path)
    try:
        member.wait_ready(READY_TIMEOUT_S)
    except (RuntimeError, TimeoutError) as exc:
        server.stop()
        raise StartFailed(str(exc)) from exc
    return member, server


def _prepare(member: MemberProcess, auth: bool) -> None:
    """The range key, then (for the jwt modes) root, a bench user allowed everything, auth on."""
    with member.client_channel() as channel:
        rpc_pb2_grpc.KVStub(channel).Put(
            rpc_pb2.PutRequest(key=RANGE_KEY, value=b"v" * VALUE_SIZE), timeout=10
        )
        if not auth:
            return
        stub = rpc_pb2_grpc.AuthStub(channel)
        stub.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password=ROOT_PASSWORD), timeout=10)
        stub.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
        stub.RoleAdd(rpc_pb2.AuthRoleAddRequest(name=BENCH_USER), timeout=10)
        everything = auth_pb2.Permission(
            permType=auth_pb2.Permission.READWRITE, key=b"\0", range_end=b"\0"
        )
        stub.RoleGrantPermission(
            rpc_pb2.AuthRoleGrantPermissionRequest(name=BENCH_USER, perm=everything), timeout=10
        )
        stub.UserAdd(
            rpc_pb2.AuthUserAddRequest(name=BENCH_USER, password=BENCH_PASSWORD), timeout=10
        )
        stub.UserGrantRole(
            rpc_pb2.AuthUserGrantRoleRequest(user=BENCH_USER, role=BENCH_USER), timeout=10
        )
        stub.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)


def _workloads(scale: float) -> dict[str, list[str]]:
    total = str(max(200, int(40000 * scale)))
    return {
        "put, 64 clients": [
            "put", "--total", total, "--key-space-size", "100000", "--val-size", str(VALUE_SIZE),
        ],
        "range linearizable, 64 clients": [
            "range", RANGE_KEY.decode(), "--total", total, "--consistency", "l",
        ],
    }  # fmt: skip


def _security_args(member: MemberProcess, mode: str, files: Files) -> list[str]:
    args: list[str] = []
    if "mtls" in mode:
        args += [
            "--endpoints", member.client_url, "--cacert", str(files.ca),
            "--cert", str(files.client_cert), "--key", str(files.client_key),
        ]  # fmt: skip
    else:
        args += ["--endpoints", member.endpoint]
    if "jwt" in mode:
        args += ["--user", f"{BENCH_USER}:{BENCH_PASSWORD}"]
    return args


Figures = dict[str, dict[str, float | str]]  # "workload | mode" -> "target" / "target cpu"


def _measure(target: str, mode: str, files: Files, scale: float, workdir: Path) -> Figures:
    out: Figures = {}
    try:
        member, server = _start(target, mode, files, workdir)
    except StartFailed as exc:
        print(f"{target} {mode}: did not start: {exc}", file=sys.stderr)
        for name in _workloads(scale):
            out.setdefault(f"{name} | {mode}", {})[target] = "did not start"
        return out
    try:
        _prepare(member, "jwt" in mode)
        security = _security_args(member, mode, files)
        warm = parse_args([*security, "--clients", "8", "put", "--total", "500"])
        run_benchmark(warm)
        for name, argv in _workloads(scale).items():
            print(f"{target} {mode}: {name}", file=sys.stderr)
            args = parse_args([*security, "--clients", "64", "--conns", "8", *argv])
            cpu_before = server.cpu_seconds()
            summary = run_benchmark(args)
            cpu = server.cpu_seconds() - cpu_before
            row = out.setdefault(f"{name} | {mode}", {})
            if summary.errors:
                row[target] = f"errors: {summary.error_codes}"
                continue
            row[target] = summary.rps
            row[f"{target} cpu"] = round(cpu * 1e6 / max(1, summary.ok), 1)
    except grpc.RpcError as exc:
        print(f"{target} {mode}: set-up failed: {exc}", file=sys.stderr)
        for name in _workloads(scale):
            out.setdefault(f"{name} | {mode}", {})[target] = f"failed: {exc.code()}"
    finally:
        server.stop()
    return out


def _num(value: float | str | None) -> float | None:
    return value if isinstance(value, (int, float)) else None


def format_table(figures: Figures, targets: list[str], modes: list[str]) -> str:
    header = ["workload", "mode"]
    for t in targets:
        header += [f"{t} req/s", f"{t} us/req", f"{t} plain/mode"]
    if "etcd" in targets and "etcdpy" in targets:
        header.append("etcdpy/etcd")
    rows = [header]
    names = sorted({key.split(" | ")[0] for key in figures})
    for name in names:
        for mode in modes:
            row = figures.get(f"{name} | {mode}", {})
            plain = figures.get(f"{name} | plain", {})
            cells = [name, mode]
            for t in targets:
                rps, cpu, base = _num(row.get(t)), _num(row.get(f"{t} cpu")), _num(plain.get(t))
                cells.append(f"{rps:,.0f}" if rps is not None else str(row.get(t, "-")))
                cells.append(f"{cpu:,.0f}" if cpu is not None else "-")
                cells.append(f"{base / rps:.2f}x" if rps and base else "-")
            if "etcdpy/etcd" in header:
                ours, theirs = _num(row.get("etcdpy")), _num(row.get("etcd"))
                cells.append(f"{ours / theirs:.2f}x" if ours and theirs else "-")
            rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="etcd,etcdpy")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies request counts")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    modes = [m for m in args.modes.split(",") if m]
    if set(targets) - {"etcd", "etcdpy"} or set(modes) - set(MODES):
        parser.error(f"targets: etcd, etcdpy; modes: {', '.join(MODES)}")
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="etcdpy-bench-secure-") as tmp:
        files = Files.make(Path(tmp) / "certs")
        for mode in modes:  # the targets alternate within a mode: both see the same machine
            for target in targets:
                for key, row in _measure(target, mode, files, args.scale, Path(tmp)).items():
                    figures.setdefault(key, {}).update(row)
    print(format_table(figures, targets, modes))
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {"time": stamp, "scale": args.scale, "secure": figures}
    (RESULTS_DIR / f"secure-{stamp}.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
