"""etcdpyctl's cluster and operator operations: member, endpoint, snapshot, defrag, alarm.

Each takes a Client, an Output and plain values (no command-line objects) and prints what
etcdctl 3.4 prints. Progress (rich, on stderr, only on a terminal) for snapshot save and
restore and for defrag. Leases are in ctl_lease.py, the key space in ctl_kv.py.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from etcdpy.cli.ctl_client import (
    EXIT_BAD_ARGS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Client,
    CtlError,
    rpc_message,
)
from etcdpy.cli.ctl_output import (
    Output,
    byte_progress,
    count_progress,
    go_duration,
    humanize_bytes,
    message_to_json,
)
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

__all__ = [
    "alarm_disarm",
    "alarm_list",
    "cluster_endpoints",
    "defrag",
    "endpoint_hashkv",
    "endpoint_health",
    "endpoint_status",
    "member_add",
    "member_list",
    "member_promote",
    "member_remove",
    "member_update",
    "snapshot_restore",
    "snapshot_save",
    "snapshot_status",
]


def os_error_text(err: OSError) -> str:
    """``<file>: <reason>``, as Go's os errors read (no errno, no Python quoting)."""
    reason = (err.strerror or str(err)).lower()
    return f"{err.filename}: {reason}" if err.filename else reason


def _stderr(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- members ----------------------------------------------------------------------------------


def member_list(client: Client, out: Output) -> None:
    stub = rpc_pb2_grpc.ClusterStub(client.channel())
    response = client.call(stub.MemberList, rpc_pb2.MemberListRequest())
    if out.is_json:
        out.json(message_to_json(response))
        return
    rows = [
        [f"{m.ID:x}", "started" if m.name else "unstarted", m.name, ",".join(m.peerURLs),
         ",".join(m.clientURLs), "true" if m.isLearner else "false"]
        for m in response.members
    ]  # fmt: skip
    out.rows(["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"], rows)


def member_add(
    client: Client, out: Output, name: str, peer_urls: list[str], *, learner: bool = False
) -> None:
    """Adds a member; in simple format also the ETCD_* settings the new member starts with."""
    out.no_table()
    if not peer_urls:
        raise CtlError("member peer urls not provided", EXIT_BAD_ARGS)
    stub = rpc_pb2_grpc.ClusterStub(client.channel())
    request = rpc_pb2.MemberAddRequest(peerURLs=peer_urls, isLearner=learner)
    resp = client.call(stub.MemberAdd, request)
    if out.is_json:
        out.json(message_to_json(resp))
        return
    out.line(f"Member {resp.member.ID:16x} added to cluster {resp.header.cluster_id:16x}")
    initial = [
        f"{name if m.ID == resp.member.ID else m.name}={url}"
        for m in resp.members
        for url in m.peerURLs
    ]
    out.line("")
    out.line(f"ETCD_NAME={_go_quote(name)}")
    out.line(f"ETCD_INITIAL_CLUSTER={_go_quote(','.join(initial))}")
    out.line(f"ETCD_INITIAL_ADVERTISE_PEER_URLS={_go_quote(','.join(peer_urls))}")
    out.line('ETCD_INITIAL_CLUSTER_STATE="existing"')


def _go_quote(text: str) -> str:
    """Go's %q for the printable text these settings hold."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def member_remove(client: Client, out: Output, member_id: int) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.ClusterStub(client.channel())
    resp = client.call(stub.MemberRemove, rpc_pb2.MemberRemoveRequest(ID=member_id))
    if out.is_json:
        out.json(message_to_json(resp))
        return
    out.line(f"Member {member_id:16x} removed from cluster {resp.header.cluster_id:16x}")


def member_update(client: Client, out: Output, member_id: int, peer_urls: list[str]) -> None:
    out.no_table()
    if not peer_urls:
        raise CtlError("member peer urls not provided", EXIT_BAD_ARGS)
    stub = rpc_pb2_grpc.ClusterStub(client.channel())
    request = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=peer_urls)
    resp = client.call(stub.MemberUpdate, request)
    if out.is_json:
        out.json(message_to_json(resp))
        return
    out.line(f"Member {member_id:16x} updated in cluster {resp.header.cluster_id:16x}")


def member_promote(client: Client, out: Output, member_id: int) -> None:
    out.no_table()
    stub = rpc_pb2_grpc.ClusterStub(client.channel())
    resp = client.call(stub.MemberPromote, rpc_pb2.MemberPromoteRequest(ID=member_id))
    if out.is_json:
        out.json(message_to_json(resp))
        return
    out.line(f"Member {member_id:16x} promoted in cluster {resp.header.cluster_id:16x}")


# -- endpoints --------------------------------------------------------------------------------


def cluster_endpoints(client: Client) -> list[str]:
    """``--cluster``: the client URLs of every member, from the member list."""
    stub = rpc_pb2_grpc.ClusterStub(client.channel())
    try:
        resp = client.call(stub.MemberList, rpc_pb2.MemberListRequest())
    except CtlError as err:
        raise CtlError(f"failed to fetch endpoints from etcd cluster member list: {err}") from None
    return [url for m in resp.members for url in m.clientURLs]


def _each_endpoint(
    client: Client, endpoints: list[str], call: Callable[[Client], Any]
) -> Iterator[tuple[str, Any, CtlError | None]]:
    """(endpoint, result, error) for each endpoint in order, each on its own channel."""
    for endpoint in endpoints:
        one = client.for_endpoint(endpoint)
        try:
            yield endpoint, call(one), None
        except CtlError as err:
            yield endpoint, None, err
        finally:
            one.close()


def endpoint_status(client: Client, out: Output, endpoints: list[str]) -> None:
    def status(one: Client) -> Any:
        stub = rpc_pb2_grpc.MaintenanceStub(one.channel())
        return one.call(stub.Status, rpc_pb2.StatusRequest())

    statuses: list[tuple[str, Any]] = []
    failed = False
    for endpoint, st, err in _each_endpoint(client, endpoints, status):
        if err is not None:
            failed = True
            _stderr(f"Failed to get the status of endpoint {endpoint} ({err})")
        else:
            statuses.append((endpoint, st))
    if out.is_json:
        out.json([{"Endpoint": ep, "Status": message_to_json(st)} for ep, st in statuses])
    else:
        headers = ["endpoint", "ID", "version", "db size", "is leader", "is learner",
                   "raft term", "raft index", "raft applied index", "errors"]  # fmt: skip
        rows = [
            [endpoint, f"{st.header.member_id:x}", st.version, humanize_bytes(st.dbSize),
             _go_bool(st.leader == st.header.member_id), _go_bool(st.isLearner),
             str(st.raftTerm), str(st.raftIndex), str(st.raftAppliedIndex),
             ", ".join(st.errors)]
            for endpoint, st in statuses
        ]  # fmt: skip
        out.rows(headers, rows)
    if failed:
        raise CtlError("", EXIT_ERROR)  # etcdctl exits 1 after the per-endpoint lines


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


@dataclass
class _Health:
    endpoint: str
    healthy: bool
    took: str
    error: str


def endpoint_health(client: Client, out: Output, endpoints: list[str]) -> None:
    """etcdctl's check, on every endpoint at once: a linearizable Get of a key answers
    (permission denied counts as healthy: the request went through consensus)."""

    def check(endpoint: str) -> _Health:
        one = client.for_endpoint(endpoint)
        started = time.monotonic()
        try:
            stub = rpc_pb2_grpc.KVStub(one.channel())
            started = time.monotonic()  # etcdctl times the read, not the dial
            one.call(stub.Range, rpc_pb2.RangeRequest(key=b"health"))
            error = ""
        except CtlError as err:
            error = "" if "permission denied" in str(err) else str(err)
        finally:
            one.close()
        took = go_duration(time.monotonic() - started)
        return _Health(endpoint, not error, took, error)

    with ThreadPoolExecutor(max_workers=max(1, min(len(endpoints), 16))) as pool:
        results = list(pool.map(check, endpoints))
    if out.is_json:
        out.json([{"endpoint": h.endpoint, "health": h.healthy, "took": h.took,
                   **({"error": h.error} if h.error else {})} for h in results])  # fmt: skip
    elif out.is_table:
        rows = [[h.endpoint, _go_bool(h.healthy), h.took, h.error] for h in results]
        out.table(["endpoint", "health", "took", "error"], rows)
    else:
        # etcdctl writes these lines on stderr.
        for h in results:
            if h.healthy:
                _stderr(
                    f"{h.endpoint} is healthy: successfully committed proposal: took = {h.took}"
                )
            else:
                _stderr(f"{h.endpoint} is unhealthy: failed to commit proposal: {h.error}")
    if any(not h.healthy for h in results):
        raise CtlError("unhealthy cluster")


def endpoint_hashkv(client: Client, out: Output, endpoints: list[str], revision: int) -> None:
    def hashkv(one: Client) -> Any:
        stub = rpc_pb2_grpc.MaintenanceStub(one.channel())
        return one.call(stub.HashKV, rpc_pb2.HashKVRequest(revision=revision))

    hashes: list[tuple[str, Any]] = []
    last_error: CtlError | None = None
    for endpoint, resp, err in _each_endpoint(client, endpoints, hashkv):
        if err is not None:
            last_error = err
            _stderr(f"Failed to get the hash of endpoint {endpoint} ({err})")
        else:
            hashes.append((endpoint, resp))
    if out.is_json:
        out.json([{"Endpoint": ep, "HashKV": message_to_json(r)} for ep, r in hashes])
    else:
        out.rows(["endpoint", "hash"], [[ep, str(r.hash)] for ep, r in hashes])
    if last_error is not None:
        raise last_error


# -- defrag and alarms ------------------------------------------------------------------------


def defrag(client: Client, out: Output, endpoints: list[str]) -> None:
    """Defragments each endpoint in turn: a bar over the members, a spinner for the current
    one (the server reports no progress of its own)."""
    failures = 0

    def one_defrag(one: Client) -> None:
        stub = rpc_pb2_grpc.MaintenanceStub(one.channel())
        one.call(stub.Defragment, rpc_pb2.DefragmentRequest())

    progress = count_progress("defrag")
    with progress:
        task = progress.add_task("", total=len(endpoints))
        for endpoint in endpoints:
            progress.update(task, description=endpoint)
            for _, _, err in _each_endpoint(client, [endpoint], one_defrag):
                if err is not None:
                    failures += 1
                    _stderr(f"Failed to defragment etcd member[{endpoint}] ({err})")
                else:
                    out.line(f"Finished defragmenting etcd member[{endpoint}]")
            progress.advance(task)
    if failures:
        raise CtlError("", EXIT_ERROR)  # etcdctl exits 1 after the per-member lines


def _alarm(client: Client, action: int, member: int = 0, alarm: int = 0) -> Any:
    stub = rpc_pb2_grpc.MaintenanceStub(client.channel())
    req = rpc_pb2.AlarmRequest(action=action, memberID=member, alarm=alarm)  # type: ignore[arg-type]
    return client.call(stub.Alarm, req)


def _print_alarms(out: Output, resp: Any) -> None:
    if out.is_json:
        out.json(message_to_json(resp))
    elif out.is_table:
        rows = [[str(a.memberID), rpc_pb2.AlarmType.Name(a.alarm)] for a in resp.alarms]
        out.table(["member id", "alarm"], rows)
    else:
        for a in resp.alarms:  # Go's %+v of the message: its text form
            out.line(f"memberID:{a.memberID} alarm:{rpc_pb2.AlarmType.Name(a.alarm)} ")


def alarm_list(client: Client, out: Output) -> None:
    _print_alarms(out, _alarm(client, rpc_pb2.AlarmRequest.GET))


def alarm_disarm(client: Client, out: Output) -> None:
    """Deactivates every raised alarm (etcd's client lists them, then disarms each)."""
    listed = _alarm(client, rpc_pb2.AlarmRequest.GET)
    resp = rpc_pb2.AlarmResponse(header=listed.header)
    for a in listed.alarms:
        done = _alarm(client, rpc_pb2.AlarmRequest.DEACTIVATE, a.memberID, a.alarm)
        resp.alarms.extend(done.alarms)
        resp.header.CopyFrom(done.header)
    _print_alarms(out, resp)


# -- snapshots --------------------------------------------------------------------------------


def snapshot_save(client: Client, out: Output, path: Path) -> None:
    """Streams the backend to PATH.part, checks the trailing sha256, renames to PATH."""
    if len(client.endpoints) != 1:
        raise CtlError("snapshot must be requested to one selected node, not multiple "
                       f"[{' '.join(client.endpoints)}]", EXIT_INTERRUPTED)  # fmt: skip
    stub = rpc_pb2_grpc.MaintenanceStub(client.channel())
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    pending = b""  # the last blob received: the checksum if the stream ends after it
    have_blob = False
    try:
        with byte_progress("snapshot save") as progress, part.open("wb") as f:
            task = progress.add_task("save", total=None)
            received = 0
            stream = stub.Snapshot(rpc_pb2.SnapshotRequest(), timeout=client.stream_timeout())
            for resp in stream:
                if have_blob:  # the previous blob was data, not the checksum
                    f.write(pending)
                    digest.update(pending)
                    received += len(pending)
                    progress.update(task, completed=received, total=received + resp.remaining_bytes)
                pending, have_blob = resp.blob, True
            f.flush()
            os.fsync(f.fileno())
    except grpc.RpcError as err:
        part.unlink(missing_ok=True)
        raise CtlError(rpc_message(err), EXIT_INTERRUPTED) from None
    except OSError as err:
        part.unlink(missing_ok=True)
        raise CtlError(os_error_text(err), EXIT_INTERRUPTED) from None
    if not have_blob or digest.digest() != pending:
        part.unlink(missing_ok=True)
        raise CtlError("snapshot checksum mismatch: the stream did not end with its sha256",
                       EXIT_INTERRUPTED)  # fmt: skip
    with part.open("ab") as f:
        f.write(pending)  # etcd's file format: the database, then its sha256
    part.replace(path)
    out.line(f"Snapshot saved at {path}")


def snapshot_status(out: Output, path: Path) -> None:
    from etcdpy.tools.snapshot import SnapshotError, status

    try:
        st = status(path)
    except OSError as exc:
        raise CtlError(os_error_text(exc)) from None
    except SnapshotError as exc:
        raise CtlError(str(exc)) from None
    if out.is_json:
        out.json(st)
        return
    row = [f"{st['hash']:x}", str(st["revision"]), str(st["totalKey"]),
           humanize_bytes(st["totalSize"])]  # fmt: skip
    out.rows(["hash", "revision", "total keys", "total size"], [row])


def snapshot_restore(
    out: Output,
    path: Path,
    *,
    data_dir: Path | None,
    name: str,
    initial_cluster: str,
    skip_hash_check: bool,
) -> None:
    """Restores into a new data directory; the bar follows the database file as it is copied
    (the copy and its hash check are most of the work)."""
    from etcdpy.tools.snapshot import SnapshotError, restore

    target = data_dir or Path(f"{name}.etcd")
    try:
        # A missing file is restore's error to report, after its checks of the arguments.
        total = path.stat().st_size if path.exists() else 0
        with _watch_file_grow("snapshot restore", target / "member" / "snap" / "db", total):
            restore(path, target, name, initial_cluster, skip_hash_check)
    except OSError as exc:
        raise CtlError(os_error_text(exc)) from None
    except SnapshotError as exc:
        raise CtlError(str(exc)) from None
    out.line(f"restored snapshot {path} into {target}")


@contextmanager
def _watch_file_grow(label: str, file: Path, total: int) -> Iterator[None]:
    """A byte bar for ``file`` growing towards ``total`` while the body runs."""
    done = threading.Event()
    with byte_progress(label) as progress:
        task = progress.add_task(label, total=total)
        if progress.disable:
            yield
            return

        def poll() -> None:
            while not done.wait(0.1):
                with suppress(OSError):  # not created yet
                    progress.update(task, completed=file.stat().st_size)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            yield
        finally:
            done.set()
            poller.join()
