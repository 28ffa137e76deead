"""``etcdpy k8s bootstrap``: the member container of the StatefulSet.

Waits for its own DNS name, asks the other pods for the member list, decides how to start
(decide.py), prepares the data dir and membership accordingly (restore, move aside, remove the
lost member, add as learner), then runs the member in this process with etcd's variables set;
threads promote the learner and set up auth.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.statefulset.client import ClientError, Member, connect, first_answering
from etcdpy.statefulset.decide import Action, Decision, SeenMember, decide, find_self
from etcdpy.statefulset.pod import Pod, pod_from
from etcdpy.statefulset.retry import NotYet, retry
from etcdpy.statefulset.settings import Settings
from etcdpy.tools.snapshot import restore
from etcdpy.wal.log import WAL

RunMember = Callable[[Mapping[str, str]], int]

TOO_MANY_LEARNERS = "too many learner members"
# Refusals that pass on their own: one learner at a time, a member that just started or
# returned (etcd's strict reconfig check), an election under way.
TRANSIENT = (
    TOO_MANY_LEARNERS,
    "unhealthy cluster",
    "leader changed",
    "no leader",
    "request timed out",
    "Deadline Exceeded",
    "not ready",
)
NOT_IN_SYNC = "in sync with leader"
MEMBER_NOT_FOUND = "member not found"


class BootstrapError(Exception):
    pass


def has_member(data_dir: Path) -> bool:
    """etcd's test: the data dir has a WAL."""
    return WAL.exists(data_dir / "member" / "wal")


def seen(answer: pb.MemberListResponse) -> list[SeenMember]:
    return [
        SeenMember(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs), m.isLearner)
        for m in answer.members
    ]


def wait_for_dns(host: str, timeout: float, log: Any) -> None:
    def resolve() -> None:
        try:
            socket.getaddrinfo(host, None)
        except OSError as err:
            raise NotYet(f"{host} does not resolve ({err})") from None

    retry(f"this pod's DNS name {host}", resolve, timeout, log, first_delay=0.5)
    log.info("own DNS name resolves", host=host)


def ask_cluster(pod: Pod, log: Any) -> tuple[list[SeenMember], str] | None:
    """The member list from the first other pod that answers, with its URL; None: nobody."""

    def ask(endpoint: str) -> tuple[list[SeenMember], str] | None:
        try:
            with connect(endpoint, pod.member_security, pod.dial_timeout, pod.timeout) as m:
                return seen(m.member_list()), endpoint
        except ClientError:
            return None

    endpoints = pod.other_client_urls()
    with ThreadPoolExecutor(max_workers=min(8, len(endpoints) or 1)) as pool:
        for answer in pool.map(ask, endpoints):
            if answer is not None:
                log.info("the cluster answered", endpoint=answer[1], members=len(answer[0]))
                return answer
    log.info("no other pod answered", asked=len(endpoints))
    return None


def member_name(pod: Pod, member: SeenMember) -> str:
    if member.name:
        return member.name
    for url in member.peer_urls:
        ordinal = pod.names.ordinal_of_url(url)
        if ordinal is not None:
            return pod.names.pod(ordinal)
    return f"member-{member.id:x}"


def joining_cluster(pod: Pod, members: list[SeenMember]) -> str:
    """ETCD_INITIAL_CLUSTER for an ``existing`` start: every member, this pod by its name."""
    parts: list[str] = []
    for member in members:
        name = pod.name if pod.peer_url in member.peer_urls else member_name(pod, member)
        parts.extend(f"{name}={url}" for url in member.peer_urls)
    return ",".join(parts)


def move_aside(data_dir: Path, log: Any) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = data_dir.with_name(f"{data_dir.name}.removed-{stamp}")
    os.rename(data_dir, target)
    log.warning("moved the data dir of a removed member aside", data_dir=str(data_dir),
                moved_to=str(target))  # fmt: skip
    return target


def restore_snapshot(snapshot: Path, data_dir: Path, pod: Pod, initial: str, log: Any) -> None:
    """Restores into a temporary dir next to the data dir, then renames it in place."""
    staging = data_dir.with_name(data_dir.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("restoring snapshot", snapshot=str(snapshot), data_dir=str(data_dir))
    restore(snapshot, staging, pod.name, initial)
    if data_dir.exists():
        data_dir.rmdir()  # empty (no member): decide said so; rmdir refuses anything else
    os.rename(staging, data_dir)
    log.info("restored snapshot", snapshot=str(snapshot), data_dir=str(data_dir))


def remove_lost(member: Member, member_id: int, timeout: float, log: Any) -> None:
    def attempt() -> None:
        try:
            member.call(member.cluster.MemberRemove, pb.MemberRemoveRequest(ID=member_id))
        except ClientError as err:
            if any(word in str(err) for word in TRANSIENT):
                raise NotYet(str(err)) from None
            if MEMBER_NOT_FOUND not in str(err):
                raise

    retry("the removal of this pod's old member", attempt, timeout, log)
    log.warning("removed this pod's old member (its volume was lost)", member_id=f"{member_id:x}")


def add_learner(member: Member, pod: Pod, timeout: float, log: Any) -> list[SeenMember]:
    """MemberAdd as a learner, retried while the cluster has a learner already."""

    def attempt() -> list[SeenMember]:
        request = pb.MemberAddRequest(peerURLs=[pod.peer_url], isLearner=True)
        try:
            return seen(member.call(member.cluster.MemberAdd, request))
        except ClientError as err:
            if any(word in str(err) for word in TRANSIENT):
                raise NotYet(str(err)) from None
            if "Peer URLs already exists" in str(err):
                return seen(member.member_list())
            raise

    members = retry("a learner slot (one new member at a time)", attempt, timeout, log)
    log.info("added as a learner", peer_url=pod.peer_url)
    return members


def plan(pod: Pod, settings: Settings, log: Any, join_timeout: float) -> dict[str, str]:
    """Decides and prepares; returns the ETCD_* variables the member starts with."""
    data_dir = settings.data_path

    def decided() -> tuple[Decision, tuple[list[SeenMember], str] | None]:
        answer = ask_cluster(pod, log)
        members = None if answer is None else answer[0]
        decision = decide(pod.name, pod.peer_url, has_member(data_dir), members,
                          pod.initial_state, pod.replicas, pod.ordinal)  # fmt: skip
        if decision.action is Action.WAIT:
            raise NotYet(decision.reason)
        return decision, answer

    decision, answer = retry("the cluster", decided, join_timeout, log, first_delay=1.0)
    log.info("decided", action=decision.action.name, reason=decision.reason)
    own = {"ETCD_NAME": pod.name, "ETCD_ADVERTISE_CLIENT_URLS": pod.client_url,
           "ETCD_INITIAL_ADVERTISE_PEER_URLS": pod.peer_url}  # fmt: skip
    initial_pods = range(max(pod.replicas, pod.ordinal + 1))
    if decision.action is Action.START_AS_IS:
        return own | {"ETCD_INITIAL_CLUSTER": pod.names.initial_cluster(initial_pods),
                      "ETCD_INITIAL_CLUSTER_STATE": pod.initial_state}  # fmt: skip
    if decision.action is Action.START_NEW:
        initial = pod.names.initial_cluster(range(pod.replicas))
        if settings.snapshot_file:
            restore_snapshot(Path(settings.snapshot_file), data_dir, pod, initial, log)
        return own | {"ETCD_INITIAL_CLUSTER": initial, "ETCD_INITIAL_CLUSTER_STATE": "new"}
    assert answer is not None
    members, endpoint = answer
    if decision.action is Action.JOIN_AS_LEARNER:
        if decision.move_data_aside:
            move_aside(data_dir, log)
        with connect(endpoint, pod.member_security, pod.dial_timeout, pod.timeout) as member:
            if decision.remove_id is not None:
                remove_lost(member, decision.remove_id, join_timeout, log)
            members = add_learner(member, pod, join_timeout, log)
    return own | {"ETCD_INITIAL_CLUSTER": joining_cluster(pod, members),
                  "ETCD_INITIAL_CLUSTER_STATE": "existing"}  # fmt: skip


def promote_when_ready(pod: Pod, timeout: float, log: Any) -> None:
    """Promotes this pod's learner once the leader says it is in sync (bounded, logged)."""

    def attempt() -> None:
        try:
            with first_answering(pod.other_client_urls(), pod.member_security,
                                 pod.dial_timeout, pod.timeout) as member:  # fmt: skip
                me = find_self(seen(member.member_list()), pod.name, pod.peer_url)
                if me is None:
                    raise NotYet("the cluster does not list this pod yet")
                if not me.is_learner:
                    return
                member.call(member.cluster.MemberPromote, pb.MemberPromoteRequest(ID=me.id))
                log.info("promoted this pod's learner to a voting member", member_id=f"{me.id:x}")
        except ClientError as err:
            raise NotYet(str(err)) from None

    try:
        retry("the promotion of this pod's learner", attempt, timeout, log, first_delay=0.5)
    except Exception as err:  # a thread: log, never raise into nowhere
        log.error("could not promote this pod's learner", error=str(err))


def setup_auth(pod: Pod, root_password: str, timeout: float, log: Any) -> None:
    """root user, root role, auth enable; idempotent, and what another pod did is fine."""
    from etcdpy.statefulset.auth_setup import ensure_auth

    try:
        retry("auth set-up", lambda: ensure_auth(pod, root_password, log), timeout, log,
              first_delay=1.0)  # fmt: skip
    except Exception as err:
        log.error("could not set up auth", error=str(err))


def start_thread(name: str, target: Callable[[], None]) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


def bootstrap(settings: Settings, environ: Mapping[str, str], run_member: RunMember,
              log: Any) -> int:  # fmt: skip
    root_password = settings.root_password
    pod = pod_from(settings, user="root" if root_password else "", password=root_password)
    dns_timeout = settings.seconds("dns_timeout")
    join_timeout = settings.seconds("join_timeout")
    log.info("bootstrapping", pod=pod.name, ordinal=pod.ordinal, replicas=pod.replicas,
             initial_cluster_state=pod.initial_state)  # fmt: skip
    wait_for_dns(pod.host, dns_timeout, log)
    computed = plan(pod, settings, log, join_timeout)
    env = dict(environ)
    env.setdefault("ETCD_DATA_DIR", str(settings.data_path))
    env.setdefault(
        "ETCD_LISTEN_CLIENT_URLS", f"{pod.names.client_scheme}://0.0.0.0:{pod.names.client_port}"
    )
    env.setdefault(
        "ETCD_LISTEN_PEER_URLS", f"{pod.names.peer_scheme}://0.0.0.0:{pod.names.peer_port}"
    )
    env.update(computed)
    log.info("starting the member", **{k.lower(): v for k, v in computed.items()})
    if computed["ETCD_INITIAL_CLUSTER_STATE"] == "existing":
        start_thread("promote", lambda: promote_when_ready(pod, join_timeout, log))
    if root_password:
        start_thread("auth-setup", lambda: setup_auth(pod, root_password, join_timeout, log))
    code = run_member(env)
    if removed_from_cluster(pod, log):
        wait_for_deletion(settings.seconds("removed_wait"), log)
    return code


def removed_from_cluster(pod: Pod, log: Any) -> bool:
    """Whether the member stopped because the cluster no longer lists it (scale-in, or
    ``etcdctl member remove``)."""
    answer = ask_cluster(pod, log)
    return answer is not None and find_self(answer[0], pod.name, pod.peer_url) is None


def wait_for_deletion(seconds: float, log: Any) -> None:
    """A removed member's container must not restart at once: its restart would read the env
    ConfigMap that ``helm upgrade`` may not have updated yet (the scale-in hook runs first) and
    add the pod back as a learner that the StatefulSet then deletes. It waits for the pod's
    deletion (SIGTERM) instead; after ``seconds`` it exits and the restart decides again."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.warning("this member was removed from the cluster; waiting for its pod to be deleted",
                seconds=seconds)  # fmt: skip
    stop.wait(seconds)
