"""The Jobs' commands: ``scale-in`` (the pre-upgrade hook), ``snapshot`` and ``defrag`` (the
CronJobs) and ``check`` (the helm test). Each is a client of the members through
``ETCDPY_K8S_ENDPOINTS`` with the client TLS and auth of ``ETCDPY_K8S_CACERT``/``CERT``/``KEY``/
``USER``/``PASSWORD``; each returns 0, or 1 with the reason logged and printed.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.statefulset.client import ClientError, Member, Security, connect, first_answering
from etcdpy.statefulset.names import PodNameError, split_pod_name
from etcdpy.statefulset.retry import NotYet, retry
from etcdpy.statefulset.settings import Settings

SNAPSHOT_NAME = re.compile(r"^db-\d{8}T\d{6}Z$")
DEFRAG_TIMEOUT = 300.0  # a large backend takes a while; etcdctl has no bound by default
SNAPSHOT_TIMEOUT = 600.0


class JobFailed(Exception):
    """The job cannot do its work safely; the message says why (exit 1)."""


def security_of(settings: Settings) -> Security:
    return Security(settings.cacert, settings.cert, settings.key, settings.user,
                    settings.password)  # fmt: skip


def _open(settings: Settings) -> Member:
    dial, timeout = settings.seconds("dial_timeout"), settings.seconds("command_timeout")
    return first_answering(settings.endpoint_list(), security_of(settings), dial, timeout)


def _at(settings: Settings, url: str) -> Member:
    return connect(url, security_of(settings), settings.seconds("dial_timeout"),
                   settings.seconds("command_timeout"))  # fmt: skip


def ordinal_of(member: pb.Member) -> int | None:
    """The pod ordinal of a member: from its name, else the first label of its peer URL."""
    candidates = [member.name] + [u.split("://", 1)[-1].split(".", 1)[0].split(":", 1)[0]
                                  for u in member.peerURLs]  # fmt: skip
    for candidate in candidates:
        try:
            return split_pod_name(candidate)[1]
        except PodNameError:
            continue
    return None


def _healthy(settings: Settings, member: pb.Member) -> bool:
    for url in member.clientURLs:
        try:
            with _at(settings, url) as m:
                return bool(m.status().leader)
        except ClientError:
            continue
    return False


def quorum(voters: int) -> int:
    return voters // 2 + 1


# -- scale-in -----------------------------------------------------------------------------


def scale_in(settings: Settings, log: Any) -> int:
    replicas = settings.integer("replicas", 1)
    with _open(settings) as client:
        while True:
            members = list(client.member_list().members)
            extra = [(o, m) for m in members if (o := ordinal_of(m)) is not None and o >= replicas]
            if not extra:
                log.info("no member to remove", replicas=replicas, members=len(members))
                return 0
            _, target = max(extra, key=lambda pair: pair[0])
            if not target.isLearner:
                voters = [m for m in members if not m.isLearner]
                remaining = [m for m in voters if m.ID != target.ID]
                healthy = [m for m in remaining if _healthy(settings, m)]
                if len(healthy) < quorum(len(remaining)):
                    raise JobFailed(
                        f"refusing to remove {target.name or hex(target.ID)}: {len(healthy)} of "
                        f"the {len(remaining)} voting members left would be healthy, fewer "
                        f"than a quorum ({quorum(len(remaining))})"
                    )
            client.call(client.cluster.MemberRemove, pb.MemberRemoveRequest(ID=target.ID))
            log.info("removed member", name=target.name, member_id=f"{target.ID:x}",
                     replicas=replicas)  # fmt: skip


# -- snapshot -----------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot(settings: Settings, log: Any) -> int:
    directory = Path(settings.required("snapshot_dir"))
    keep = settings.integer("snapshot_keep", 1)
    if not directory.is_dir():
        raise JobFailed(f"snapshot dir {directory} does not exist")
    name = "db-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    final = directory / name
    partial = directory / f".{name}.part"
    with _open(settings) as client:
        size = 0
        try:
            with partial.open("wb") as out:
                for chunk in client.stream(client.maintenance.Snapshot, pb.SnapshotRequest(),
                                           SNAPSHOT_TIMEOUT):  # fmt: skip
                    out.write(chunk.blob)
                    size += len(chunk.blob)
                out.flush()
                os.fsync(out.fileno())
            if size == 0:
                raise JobFailed("the member sent an empty snapshot")
            os.rename(partial, final)
            _fsync_dir(directory)
        finally:
            partial.unlink(missing_ok=True)
        log.info("saved snapshot", path=str(final), size=size, endpoint=client.endpoint)
    old = sorted(p for p in directory.iterdir() if SNAPSHOT_NAME.match(p.name))[:-keep]
    for path in old:
        path.unlink()
        log.info("deleted old snapshot", path=str(path), keep=keep)
    for stale in directory.glob(".db-*.part"):  # a job killed half way
        stale.unlink(missing_ok=True)
    return 0


# -- defrag -------------------------------------------------------------------------------


def _status_of(settings: Settings, member: pb.Member) -> pb.StatusResponse | None:
    for url in member.clientURLs:
        try:
            with _at(settings, url) as m:
                return m.status()
        except ClientError:
            continue
    return None


def defrag(settings: Settings, log: Any) -> int:
    with _open(settings) as client:
        members = [m for m in client.member_list().members if not m.isLearner]
    statuses = {m.ID: _status_of(settings, m) for m in members}
    down = [m.name or hex(m.ID) for m in members if statuses[m.ID] is None]
    if down:
        raise JobFailed(f"not defragmenting: members not answering: {', '.join(down)}")
    leaders = {s.leader for s in statuses.values() if s is not None}
    order = sorted(members, key=lambda m: (m.ID in leaders, m.name))  # leader last
    for member in order:
        url = member.clientURLs[0]
        with _at(settings, url) as m:
            m.call(m.maintenance.Defragment, pb.DefragmentRequest(), timeout=DEFRAG_TIMEOUT)
        log.info("defragmented", name=member.name, endpoint=url,
                 leader=member.ID in leaders)  # fmt: skip
        _wait_healthy(settings, members, log)
    return 0


def _wait_healthy(settings: Settings, members: list[pb.Member], log: Any) -> None:
    def attempt() -> None:
        sick = [m.name for m in members if not _healthy(settings, m)]
        if sick:
            raise NotYet(f"not healthy: {', '.join(sick)}")

    retry("every member healthy", attempt, settings.seconds("join_timeout"), log)


# -- check (helm test) --------------------------------------------------------------------


def check(settings: Settings, log: Any) -> int:
    key = f"etcdpy-k8s-check/{secrets.token_hex(8)}".encode()
    value = secrets.token_hex(16).encode()
    with _open(settings) as client:
        put = client.call(client.kv.Put, pb.PutRequest(key=key, value=value))
        got = client.call(client.kv.Range, pb.RangeRequest(key=key))
        if [kv.value for kv in got.kvs] != [value]:
            raise JobFailed(f"read back {[kv.value for kv in got.kvs]!r}, wrote {value!r}")
        client.call(client.kv.DeleteRange, pb.DeleteRangeRequest(key=key))
        members = list(client.member_list().members)
    log.info("wrote, read back and deleted a key", revision=put.header.revision)

    def agree() -> dict[str, int]:
        revisions: dict[str, int] = {}
        for member in members:
            status = _status_of(settings, member)
            if status is None:
                raise NotYet(f"member {member.name or hex(member.ID)} does not answer")
            revisions[member.name or hex(member.ID)] = status.header.revision
        if len(set(revisions.values())) != 1:
            raise NotYet(f"members disagree on the revision: {revisions}")
        return revisions

    revisions = retry("every member answering at one revision", agree, 30.0, log)
    log.info("every member answers at one revision", members=len(members),
             revision=next(iter(revisions.values())))  # fmt: skip
    print(f"ok: {len(members)} members at revision {next(iter(revisions.values()))}")
    return 0


def _guarded(job: Callable[[Settings, Any], int]) -> Callable[[Settings, Any], int]:
    def run(settings: Settings, log: Any) -> int:
        try:
            return job(settings, log)
        except JobFailed as err:
            log.error("failed", error=str(err))
            print(f"etcdpy k8s: {err}", file=sys.stderr)
            return 1

    return run


JOBS: dict[str, Callable[[Settings, Any], int]] = {
    "scale-in": _guarded(scale_in),
    "snapshot": _guarded(snapshot),
    "defrag": _guarded(defrag),
    "check": _guarded(check),
}
