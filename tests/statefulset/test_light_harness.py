"""``etcdpy k8s`` with real processes on the light harness (light_harness.py), checked with
Debian's etcdctl: bootstrap, crash, lost volume, scale out and in, the Jobs, auth set-up and
startFromSnapshot. Every step checks that members agree and no acknowledged write is lost.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from etcdpy.testing.processes import etcdpy_command
from tests.statefulset.light_harness import LightSet


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[LightSet]:
    light = LightSet(tmp_path)
    try:
        yield light
    finally:
        light.stop_all()


class Writes:
    """Acknowledged writes, checked on every member."""

    def __init__(self, pods: LightSet) -> None:
        self.pods = pods
        self.acked: dict[str, str] = {}

    def put(self, ordinals: list[int], count: int = 5) -> None:
        for _ in range(count):
            key, value = f"k/{len(self.acked):04d}", f"v{len(self.acked)}"
            # A write is acknowledged once etcdctl says OK; a refused one (no leader yet after
            # a kill) is retried, bounded, as a client would.
            self.pods.wait(f"put {key}", self._putter(ordinals, key, value))
            self.acked[key] = value

    def _putter(self, ordinals: list[int], key: str, value: str) -> Callable[[], bool]:
        return lambda: self.pods.etcdctl(ordinals, "put", key, value, check=False).returncode == 0

    def check(self, ordinals: list[int]) -> None:
        self.pods.wait(f"pods {ordinals} agree", lambda: self.pods.agreed(ordinals))
        for ordinal in ordinals:
            out = self.pods.etcdctl(
                [ordinal], "get", "--prefix", "k/", "--consistency=s", "-w", "json"
            ).stdout
            kvs = json.loads(out).get("kvs", [])
            got = {
                base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
                for kv in kvs
            }
            assert got == self.acked, f"pod {ordinal} lost writes"


def test_a_set_bootstraps_heals_scales_and_runs_its_jobs(pods: LightSet, tmp_path: Path) -> None:
    writes = Writes(pods)
    for ordinal in range(3):  # in parallel, as podManagementPolicy Parallel
        pods.start(ordinal, replicas=3)
    writes.check([0, 1, 2])
    writes.put([0, 1, 2])

    # kill -9 and restart: starts as is
    pods.stop(1, signal.SIGKILL)
    writes.put([0, 2])
    pods.start(1, replicas=3, state="existing")
    writes.check([0, 1, 2])
    assert "START_AS_IS" in pods.log(1).read_text()

    # a lost volume: the old member is removed, the pod is added as a learner and promoted
    old_ids = {m["name"]: m["ID"] for m in pods.members([0])}
    pods.stop(2, signal.SIGKILL)
    shutil.rmtree(pods.data_dir(2))
    writes.put([0, 1])
    pods.start(2, replicas=3, state="existing")
    writes.check([0, 1, 2])
    assert {m["name"]: m["ID"] for m in pods.members([0])}["etcdpy-2"] != old_ids["etcdpy-2"]
    # (the pod logs the promotion once its call returns, which may be after the check above)
    pods.wait("pod 2 logs its removal and promotion", lambda: _removed_and_promoted(pods.log(2)))

    # the Jobs, while the re-added member's link ages: etcd adds a member only once every voter
    # has been connected for 5 s, and the scale-out below would otherwise wait for that.
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    # Two older snapshots (names are the UTC second) and a half-written one: with KEEP=2 the job
    # keeps the newer old one beside its own, deletes the oldest, and removes the part file.
    for old in ("db-20200101T000000Z", "db-20200101T000001Z", ".db-20200101T000002Z.part"):
        (snapshots / old).write_bytes(b"old")
    done = pods.job(
        "snapshot",
        3,
        {"ETCDPY_K8S_SNAPSHOT_DIR": str(snapshots), "ETCDPY_K8S_SNAPSHOT_KEEP": "2"},
    )
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in snapshots.iterdir())
    assert len(files) == 2 and files[0] == "db-20200101T000001Z", files
    assert files[1].startswith("db-2") and files[1] > files[0], files
    status = subprocess.run(
        [*etcdpy_command(), "snapshot", "status", "-w", "json", str(snapshots / files[-1])],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0 and json.loads(status.stdout)["revision"] > 0, status.stderr
    done = pods.job("defrag", 3)
    assert done.returncode == 0, done.stderr
    defragmented = [line for line in done.stderr.splitlines() if '"defragmented"' in line]
    assert len(defragmented) == 3 and '"leader":true' in defragmented[-1]  # the leader last
    done = pods.job("check", 3)
    assert done.returncode == 0 and "ok: 3 members" in done.stdout, done.stderr
    writes.check([0, 1, 2])

    # scale out 3 -> 5 in parallel: one learner at a time, both promoted
    pods.start(3, replicas=5, state="existing")
    pods.start(4, replicas=5, state="existing")
    writes.put([0, 1, 2])
    writes.check([0, 1, 2, 3, 4])

    # scale in 5 -> 3: the hook removes 4 then 3, then the StatefulSet stops them
    done = pods.job("scale-in", 3)
    assert done.returncode == 0, done.stderr
    assert done.stderr.index('"etcdpy-4"') < done.stderr.index('"etcdpy-3"')

    # the removed members stop serving but their containers do not exit (an exit would restart
    # them with a ConfigMap that may still say 5 replicas): they wait for the pods' deletion
    def waits_for_deletion(ordinal: int) -> Callable[[], bool]:
        return lambda: "waiting for its pod to be deleted" in pods.log(ordinal).read_text()

    for gone in (4, 3):
        pods.wait(f"pod {gone} waits for its deletion", waits_for_deletion(gone))
    assert len(pods.members([0])) == 3
    assert pods.stop(4) == 0 and pods.stop(3) == 0
    writes.put([0, 1, 2])
    writes.check([0, 1, 2])

    # scale out to 4 again: pod 3 keeps its stale data dir (PVC kept), moves it aside, rejoins
    pods.start(3, replicas=4, state="existing")
    writes.check([0, 1, 2, 3])
    assert "moved the data dir of a removed member aside" in pods.log(3).read_text()


def _removed_and_promoted(log: Path) -> bool:
    text = log.read_text()
    return "removed this pod's old member" in text and "promoted this pod's learner" in text


def test_scale_in_refuses_to_break_quorum(pods: LightSet) -> None:
    for ordinal in range(3):
        pods.start(ordinal, replicas=3)
    pods.wait("3 members agree", lambda: pods.agreed([0, 1, 2]))
    pods.stop(1, signal.SIGKILL)  # one voter down: removing pod 2 would leave 1 healthy of 2
    done = pods.job("scale-in", 2, endpoints=[0, 2])
    assert done.returncode == 1
    assert "fewer than a quorum" in done.stderr
    assert len(pods.members([0])) == 3


def test_auth_setup_and_start_from_snapshot(pods: LightSet, tmp_path: Path) -> None:
    pods.start(0, replicas=1)
    pods.wait("pod 0 serves", lambda: pods.agreed([0]))
    pods.etcdctl([0], "put", "k/restored", "yes")
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    done = pods.job("snapshot", 1, {"ETCDPY_K8S_SNAPSHOT_DIR": str(snapshots)}, endpoints=[0])
    assert done.returncode == 0, done.stderr
    pods.stop(0)
    shutil.rmtree(pods.data_dir(0).parent)
    (snapshot,) = snapshots.iterdir()

    extra = {"ETCDPY_K8S_SNAPSHOT_FILE": str(snapshot), "ETCDPY_K8S_ROOT_PASSWORD": "s3cret"}
    for ordinal in range(3):
        pods.start(ordinal, replicas=3, extra=extra)
    # Auth is on once a write without a user is refused.
    pods.wait(
        "auth enabled", lambda: pods.etcdctl([0], "put", "k/x", "1", check=False).returncode != 0
    )
    for ordinal in range(3):
        out = pods.etcdctl([ordinal], "--user", "root:s3cret", "get", "k/restored").stdout
        assert out.split() == ["k/restored", "yes"]
    denied = pods.etcdctl([1], "get", "k/restored", check=False)
    assert denied.returncode != 0 and "user name is empty" in denied.stderr
    done = pods.job("check", 3, {"ETCDPY_K8S_USER": "root", "ETCDPY_K8S_PASSWORD": "s3cret"})
    assert done.returncode == 0 and "ok: 3 members" in done.stdout, done.stderr
    assert "s3cret" not in "".join(pods.log(o).read_text() for o in range(3))
