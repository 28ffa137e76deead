"""etcdpyctl's operator commands: snapshot, defrag, alarm, endpoint hashkv/health, lease, watch.

Progress bars (rich, on stderr, only when stderr is a terminal) for snapshot save/restore and
defrag; output otherwise as etcdctl 3.4 prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

if TYPE_CHECKING:
    from etcdpy.cli.ctl import Client, Output

Command = Callable[["Client", argparse.Namespace, "Output"], None]


def _err() -> Console:
    return Console(stderr=True)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """etcdctl's ``-w table``, drawn by rich (plain ASCII when not on a terminal)."""
    from rich import box
    from rich.table import Table

    tty = sys.stdout.isatty()
    table = Table(box=box.SQUARE if tty else box.ASCII)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # Off a terminal nothing is cut to fit a width: scripts get every value whole.
    Console(width=None if tty else 100_000).print(table)


def _show_progress() -> bool:
    return sys.stderr.isatty()


@contextmanager
def _spinner(text: str) -> Iterator[None]:
    if not _show_progress():
        yield
        return
    with Progress(SpinnerColumn(), TextColumn(text), TimeElapsedColumn(), console=_err()):
        yield


def _ctl_error(message: str) -> Exception:
    from etcdpy.cli.ctl import CtlError

    return CtlError(message)


def _stream_error(err: grpc.RpcError) -> Exception:
    from etcdpy.cli.ctl import _rpc_message

    return _ctl_error(_rpc_message(err))


# -- snapshot -------------------------------------------------------------------------------


def cmd_snapshot_save(client: Client, args: argparse.Namespace, out: Output) -> None:
    """Streams the backend to FILE.part, checks the trailing sha256, renames to FILE."""
    stub = rpc_pb2_grpc.MaintenanceStub(client.channel())
    path = Path(args.filename)
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    blobs: list[bytes] = []
    progress = Progress(
        TextColumn("snapshot"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=_err(),
        disable=not _show_progress(),
    )
    try:
        with progress, part.open("wb") as f:
            task = progress.add_task("save", total=None)
            received = 0
            for resp in stub.Snapshot(rpc_pb2.SnapshotRequest()):
                if blobs:  # the previous blob was data, not the checksum
                    f.write(blobs[-1])
                    digest.update(blobs[-1])
                    received += len(blobs[-1])
                    progress.update(task, completed=received, total=received + resp.remaining_bytes)
                blobs = [resp.blob]
            f.flush()
            os.fsync(f.fileno())
    except grpc.RpcError as err:
        part.unlink(missing_ok=True)
        raise _stream_error(err) from None
    if not blobs or digest.digest() != blobs[-1]:
        part.unlink(missing_ok=True)
        raise _ctl_error("snapshot checksum mismatch: the stream did not end with its sha256")
    with part.open("ab") as f:
        f.write(blobs[-1])  # keep etcd's file format: the database, then its sha256
    part.replace(path)
    out.line(f"Snapshot saved at {path}")


def cmd_snapshot_restore(client: Client, args: argparse.Namespace, out: Output) -> None:
    from etcdpy.tools.snapshot import SnapshotError, restore

    data_dir = Path(args.data_dir or f"{args.name}.etcd")
    try:
        with _spinner(f"restoring {args.filename} into {data_dir}"):
            restore(
                Path(args.filename),
                data_dir,
                args.name,
                args.initial_cluster,
                args.skip_hash_check,
            )
    except (SnapshotError, OSError) as exc:
        raise _ctl_error(str(exc)) from None
    out.line(f"restored snapshot {args.filename} into {data_dir}")


def cmd_snapshot_status(client: Client, args: argparse.Namespace, out: Output) -> None:
    from etcdpy.tools.snapshot import SnapshotError, status

    try:
        st = status(Path(args.filename))
    except (SnapshotError, OSError) as exc:
        raise _ctl_error(str(exc)) from None
    if out.fmt == "json":
        out.json(st)
    else:
        from etcdpy.cli.ctl import humanize_bytes

        row = [f"{st['hash']:x}", str(st["revision"]), str(st["totalKey"]),
               humanize_bytes(st["totalSize"])]  # fmt: skip
        out.rows(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], [row])


# -- defrag, alarms, endpoint checks ----------------------------------------------------------


def cmd_defrag(client: Client, args: argparse.Namespace, out: Output) -> None:
    stub = rpc_pb2_grpc.MaintenanceStub(client.channel())
    with _spinner(f"defragmenting {client.endpoint}"):
        client.call(stub.Defragment, rpc_pb2.DefragmentRequest())
    out.line(f"Finished defragmenting etcd member[{client.endpoint}]")


def _alarm(client: Client, action: int, member: int = 0, alarm: int = 0) -> Any:
    stub = rpc_pb2_grpc.MaintenanceStub(client.channel())
    req = rpc_pb2.AlarmRequest(action=action, memberID=member, alarm=alarm)  # type: ignore[arg-type]
    return client.call(stub.Alarm, req)


def _print_alarms(resp: Any, out: Output) -> None:
    from etcdpy.cli.ctl import message_to_json

    if out.fmt == "json":
        out.json(message_to_json(resp))
        return
    if out.fmt == "table":
        rows = [[str(a.memberID), rpc_pb2.AlarmType.Name(a.alarm)] for a in resp.alarms]
        out.rows(["MEMBER ID", "ALARM"], rows)
        return
    for a in resp.alarms:
        out.line(f"memberID:{a.memberID} alarm:{rpc_pb2.AlarmType.Name(a.alarm)} ")


def cmd_alarm_list(client: Client, args: argparse.Namespace, out: Output) -> None:
    _print_alarms(_alarm(client, rpc_pb2.AlarmRequest.GET), out)


def cmd_alarm_disarm(client: Client, args: argparse.Namespace, out: Output) -> None:
    listed = _alarm(client, rpc_pb2.AlarmRequest.GET)
    resp = rpc_pb2.AlarmResponse()
    for a in listed.alarms:
        done = _alarm(client, rpc_pb2.AlarmRequest.DEACTIVATE, a.memberID, a.alarm)
        resp.alarms.extend(done.alarms)
        resp.header.CopyFrom(done.header)
    _print_alarms(resp, out)


def cmd_endpoint_hashkv(client: Client, args: argparse.Namespace, out: Output) -> None:
    from etcdpy.cli.ctl import message_to_json

    stub = rpc_pb2_grpc.MaintenanceStub(client.channel())
    resp = client.call(stub.HashKV, rpc_pb2.HashKVRequest(revision=args.rev))
    if out.fmt == "json":
        out.json([{"Endpoint": client.endpoint, "HashKV": message_to_json(resp)}])
    else:
        out.rows(["ENDPOINT", "HASH"], [[client.endpoint, str(resp.hash)]])


def cmd_endpoint_health(client: Client, args: argparse.Namespace, out: Output) -> None:
    """etcdctl's check: a linearizable Get of a key answers (permission errors count as up)."""
    from etcdpy.cli.ctl import CtlError

    started = time.monotonic()
    stub = rpc_pb2_grpc.KVStub(client.channel())
    try:
        client.call(stub.Range, rpc_pb2.RangeRequest(key=b"health"))
    except CtlError as err:
        raise CtlError(
            f"{client.endpoint} is unhealthy: failed to commit proposal: {err}"
        ) from None
    took = (time.monotonic() - started) * 1000
    out.line(f"{client.endpoint} is healthy: successfully committed proposal: took = {took:.6f}ms")


# -- leases and watch -------------------------------------------------------------------------


def cmd_lease_grant(client: Client, args: argparse.Namespace, out: Output) -> None:
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    resp = client.call(stub.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=args.ttl))
    out.line(f"lease {resp.ID:016x} granted with TTL({resp.TTL}s)")


def cmd_lease_revoke(client: Client, args: argparse.Namespace, out: Output) -> None:
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    client.call(stub.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=int(args.id, 16)))
    out.line(f"lease {int(args.id, 16):016x} revoked")


def cmd_lease_timetolive(client: Client, args: argparse.Namespace, out: Output) -> None:
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    lease = int(args.id, 16)
    resp = client.call(
        stub.LeaseTimeToLive, rpc_pb2.LeaseTimeToLiveRequest(ID=lease, keys=args.keys)
    )
    if resp.TTL == -1:
        out.line(f"lease {lease:016x} already expired")
        return
    text = f"lease {lease:016x} granted with TTL({resp.grantedTTL}s), remaining({resp.TTL}s)"
    if args.keys:
        text += f", attached keys({[k.decode(errors='replace') for k in resp.keys]})"
    out.line(text)


def cmd_lease_list(client: Client, args: argparse.Namespace, out: Output) -> None:
    stub = rpc_pb2_grpc.LeaseStub(client.channel())
    resp = client.call(stub.LeaseLeases, rpc_pb2.LeaseLeasesRequest())
    out.line(f"found {len(resp.leases)} leases")
    for lease in resp.leases:
        out.line(f"{lease.ID:016x}")


def cmd_watch(client: Client, args: argparse.Namespace, out: Output) -> None:
    from etcdpy.cli.ctl import _key_range, _text

    key, end = _key_range(args)
    stub = rpc_pb2_grpc.WatchStub(client.channel())
    create = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=key, range_end=end, start_revision=args.rev, prev_kv=args.prev_kv
        )
    )
    try:
        for resp in stub.Watch(_forever(create)):
            for ev in resp.events:
                out.line("PUT" if ev.type == 0 else "DELETE")
                if ev.prev_kv.key and args.prev_kv:
                    out.raw(_text(ev.prev_kv.key))
                    out.raw(_text(ev.prev_kv.value))
                out.raw(_text(ev.kv.key))
                out.raw(_text(ev.kv.value))
            sys.stdout.flush()
            if resp.canceled:
                raise _ctl_error(resp.cancel_reason or "watch canceled")
            if args.once and resp.events:
                return
    except grpc.RpcError as err:
        raise _stream_error(err) from None
    except KeyboardInterrupt:
        return


def _forever(first: rpc_pb2.WatchRequest) -> Iterator[rpc_pb2.WatchRequest]:
    yield first
    while True:
        time.sleep(3600)


# -- the parser -------------------------------------------------------------------------------


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    snapshot = commands.add_parser("snapshot", help="snapshot save | restore | status")
    sub = snapshot.add_subparsers(dest="snapshot_command", required=True)
    save = sub.add_parser("save", help="stream a snapshot of the backend", parents=[common])
    save.add_argument("filename")
    save.set_defaults(run=cmd_snapshot_save)
    restore = sub.add_parser("restore", help="restore a snapshot into a new data directory")
    restore.add_argument("filename")
    restore.add_argument("--data-dir", default=None)
    restore.add_argument("--name", default="default")
    restore.add_argument("--initial-cluster", default="default=http://localhost:2380")
    restore.add_argument("--skip-hash-check", action="store_true")
    restore.set_defaults(run=cmd_snapshot_restore, endpoints="", write_out="simple",
                         dial_timeout=2.0, command_timeout=5.0)  # fmt: skip
    status = sub.add_parser("status", help="hash, revision, keys and size", parents=[common])
    status.add_argument("filename")
    status.set_defaults(run=cmd_snapshot_status)

    commands.add_parser("defrag", help="defragment the backend", parents=[common]).set_defaults(
        run=cmd_defrag
    )

    alarm = commands.add_parser("alarm", help="alarm list | disarm")
    alarms = alarm.add_subparsers(dest="alarm_command", required=True)
    alarms.add_parser("list", parents=[common]).set_defaults(run=cmd_alarm_list)
    alarms.add_parser("disarm", parents=[common]).set_defaults(run=cmd_alarm_disarm)

    lease = commands.add_parser("lease", help="lease grant | revoke | timetolive | list")
    leases = lease.add_subparsers(dest="lease_command", required=True)
    grant = leases.add_parser("grant", parents=[common])
    grant.add_argument("ttl", type=int)
    grant.set_defaults(run=cmd_lease_grant)
    revoke = leases.add_parser("revoke", parents=[common])
    revoke.add_argument("id")
    revoke.set_defaults(run=cmd_lease_revoke)
    ttl = leases.add_parser("timetolive", parents=[common])
    ttl.add_argument("id")
    ttl.add_argument("--keys", action="store_true")
    ttl.set_defaults(run=cmd_lease_timetolive)
    leases.add_parser("list", parents=[common]).set_defaults(run=cmd_lease_list)

    watch = commands.add_parser("watch", help="watch a key or a range", parents=[common])
    watch.add_argument("key")
    watch.add_argument("range_end", nargs="?")
    watch.add_argument("--prefix", action="store_true")
    watch.add_argument("--from-key", action="store_true")
    watch.add_argument("--rev", type=int, default=0)
    watch.add_argument("--prev-kv", action="store_true")
    watch.add_argument("--once", action="store_true", help="stop after the first events")
    watch.set_defaults(run=cmd_watch)


def add_endpoint_commands(endpoint_commands: Any, common: argparse.ArgumentParser) -> None:
    hashkv = endpoint_commands.add_parser(
        "hashkv", help="HashKV of each endpoint", parents=[common]
    )
    hashkv.add_argument("--rev", type=int, default=0)
    hashkv.set_defaults(run=cmd_endpoint_hashkv)
    endpoint_commands.add_parser(
        "health", help="health of each endpoint", parents=[common]
    ).set_defaults(run=cmd_endpoint_health)
