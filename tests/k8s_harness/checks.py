"""What every scenario checks, with Debian's etcdctl 3.4 run in the client namespace: the
members agree (the member list names exactly the pods, all started voters; every member
answers with the same revision once writes stop) and no acknowledged write is lost (a writer in
the client namespace keeps putting keys during faults; every key it was told succeeded is there
afterwards, read linearizably through each member)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.k8s_harness.cluster import Release

WRITER = Path(__file__).with_name("writer.py")
REPO = Path(__file__).resolve().parents[2]


class Etcdctl:
    """Debian's etcdctl in the client namespace, where the pod DNS names resolve."""

    def __init__(
        self,
        release: Release,
        user: str = "",
        password: str = "",
        cacert: Path | None = None,
        peer_scheme: str = "http",
        cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.release = release
        self.user = user
        self.password = password
        self.cacert = cacert  # client TLS: the CA the client port's certificate chains to
        self.peer_scheme = peer_scheme
        # As etcd 3.4, a member given a trusted CA asks every client for a certificate.
        self.cert = cert  # (certificate, key)

    @property
    def scheme(self) -> str:
        return "https" if self.cacert else "http"

    def client_port(self) -> int:
        return 2379

    def endpoint(self, pod: str) -> str:
        return f"{self.scheme}://{self.release.pod_fqdn(pod)}:{self.client_port()}"

    def all_endpoints(self) -> list[str]:
        return [self.endpoint(p) for p in self.release.pod_names()]

    def run(
        self, *args: str, endpoints: list[str] | None = None, timeout: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "etcdctl",
            f"--endpoints={','.join(endpoints or self.all_endpoints())}",
            "--dial-timeout=3s",
            "--command-timeout=5s",
        ]
        if self.user:
            argv.append(f"--user={self.user}:{self.password}")
        if self.cacert:
            argv.append(f"--cacert={self.cacert}")
        if self.cert:
            argv += [f"--cert={self.cert[0]}", f"--key={self.cert[1]}"]
        env = {"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return self.release.kube.client_run([*argv, *args], timeout=timeout, env=env)

    def out(self, *args: str, endpoints: list[str] | None = None) -> str:
        proc = self.run(*args, endpoints=endpoints)
        if proc.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def json(self, *args: str, endpoints: list[str] | None = None) -> Any:
        return json.loads(self.out(*args, "-w", "json", endpoints=endpoints))

    def members(self, endpoints: list[str] | None = None) -> list[dict[str, Any]]:
        return list(self.json("member", "list", endpoints=endpoints)["members"])

    def statuses(self) -> list[dict[str, Any]]:
        """``endpoint status`` of every pod (an unreachable one makes it fail)."""
        return list(self.json("endpoint", "status"))

    def leader_pod(self) -> str:
        """The pod whose member leads, per every member's status."""
        statuses = self.statuses()
        leaders = {s["Status"]["leader"] for s in statuses}
        if len(leaders) != 1 or 0 in leaders:
            raise AssertionError(f"members do not agree on a leader: {statuses}")
        leader = leaders.pop()
        for status in statuses:
            if status["Status"]["header"]["member_id"] == leader:
                return str(status["Endpoint"]).split("//", 1)[1].split(".", 1)[0]
        raise AssertionError(f"no endpoint is the leader {leader}: {statuses}")


def members_agree(ctl: Etcdctl, same_revision: bool = True) -> None:
    """The member list names exactly the replica count's pods, each a started voter, every
    member answers and follows the same leader, and (``same_revision``: once writes stopped)
    every member reports the same revision."""
    pods = ctl.release.pod_names()
    members = ctl.members()
    names = sorted(m.get("name", "") for m in members)
    assert names == sorted(pods), f"member list {names}, pods {pods}"
    learners = [m["name"] for m in members if m.get("isLearner")]
    assert not learners, f"still learners: {learners}"
    expected = {p: [f"{ctl.peer_scheme}://{ctl.release.pod_fqdn(p)}:2380"] for p in pods}
    peer_urls = {m["name"]: sorted(m.get("peerURLs", [])) for m in members}
    assert peer_urls == expected, f"peer URLs {peer_urls}, expected {expected}"
    statuses = ctl.statuses()
    revisions = {s["Endpoint"]: s["Status"]["header"]["revision"] for s in statuses}
    assert not same_revision or len(set(revisions.values())) == 1, f"revisions differ: {revisions}"
    leaders = {s["Status"]["leader"] for s in statuses}
    assert len(leaders) == 1, f"leaders differ: {statuses}"


def eventually(check: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            return check()
        except (AssertionError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what or 'condition'} not reached in {timeout}s: {last}")


def lost_keys(ctl: Etcdctl, acked: list[str], prefix: str) -> dict[str, list[str]]:
    """Per member: the acknowledged keys a linearizable read through it lacks."""
    lost = {}
    for pod in ctl.release.pod_names():
        out = ctl.out("get", "--prefix", "--keys-only", prefix, endpoints=[ctl.endpoint(pod)])
        present = {line for line in out.splitlines() if line}
        missing = [k for k in acked if k not in present]
        if missing:
            lost[pod] = missing
    return lost


class WriterHandle:
    def __init__(self, out: Path, prefix: str) -> None:
        self.out = out
        self.prefix = prefix
        self.acked: list[str] = []


@contextlib.contextmanager
def writing(ctl: Etcdctl, prefix: str, workdir: Path) -> Iterator[WriterHandle]:
    """A writer through every pod's name, in the client namespace, for the block; afterwards
    ``acked`` holds every key it was told succeeded."""
    out = workdir / f"acked-{time.monotonic_ns()}.txt"
    out.touch()
    endpoints = ",".join(f"{ctl.release.pod_fqdn(p)}:2379" for p in ctl.release.pod_names())
    creds = f"{ctl.user}:{ctl.password}" if ctl.user else ""
    env = {**os.environ, "GRPC_DNS_RESOLVER": "native", "PYTHONPATH": str(REPO)}
    if ctl.cacert:
        env["WRITER_CACERT"] = str(ctl.cacert)
    if ctl.cert:
        env["WRITER_CERT"], env["WRITER_KEY"] = str(ctl.cert[0]), str(ctl.cert[1])
    handle = WriterHandle(out, prefix)
    with out.with_suffix(".log").open("wb") as log:
        argv = [sys.executable, str(WRITER), endpoints, str(out), prefix]
        proc = ctl.release.kube.client_popen(
            [*argv, *([creds] if creds else [])], env=env, stdout=log, stderr=log
        )
        try:
            yield handle
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            handle.acked = [k for k in out.read_text().splitlines() if k]
