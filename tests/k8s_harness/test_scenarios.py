"""Issue 18's scenarios on the real chart (helm/etcdpy rendered by helm template), its pods run
by the harness: install 3, a real network partition of the leader under writes, kill -9 of the
leader pod, a follower deleted gracefully, a pod whose PVC was lost, scale 3 -> 5 -> 3 through
helm upgrade (the scale-in hook Job first), the snapshot and defrag CronJobs, ``helm test``, and
a new cluster restored from the snapshot (startFromSnapshot). One installed release is shared
in file order; every step checks with Debian's etcdctl that the members agree and that no
acknowledged write is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_harness.checks import Etcdctl, eventually, lost_keys, members_agree, writing
from tests.k8s_harness.cluster import LocalKube, Release
from tests.k8s_harness.conftest import require_helm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RELEASE = "store"
FULLNAME = f"{RELEASE}-etcdpy"
SNAPSHOT_CLAIM = f"{FULLNAME}-snapshotter"
CUT_SECONDS = 10.0
READY_TIMEOUT = 90.0
AGREE_TIMEOUT = 45.0


def values(replicas: int, **extra: Any) -> dict[str, Any]:
    return {
        "replicaCount": replicas,
        "terminationGracePeriodSeconds": 15,
        "disasterRecovery": {"enabled": True, "cronjob": {"snapshotHistoryLimit": 2}},
        "defrag": {"enabled": True},
        **extra,
    }


@pytest.fixture(scope="module")
def store(kube: LocalKube) -> Iterator[Release]:
    require_helm()
    release = Release(kube, RELEASE)
    try:
        release.install(values(3))
        yield release
    finally:
        release.uninstall()


def agree(release: Release, writes_stopped: bool = True) -> Etcdctl:
    """Every pod ready, the members agree (and, ``writes_stopped``, on the revision too)."""
    ctl = Etcdctl(release)
    release.wait_ready(timeout=READY_TIMEOUT)
    eventually(
        lambda: members_agree(ctl, same_revision=writes_stopped),
        AGREE_TIMEOUT,
        f"members agree\n{release.describe()}",
    )
    assert release.controller_errors() == []
    return ctl


def nothing_lost(ctl: Etcdctl, acked: list[str], prefix: str) -> None:
    assert acked, "the writer got no write acknowledged"
    lost = lost_keys(ctl, acked, prefix)
    assert lost == {}, f"acknowledged writes lost: { {p: k[:5] for p, k in lost.items()} }"


def leader_and_follower(ctl: Etcdctl) -> tuple[str, str]:
    leader = eventually(ctl.leader_pod, AGREE_TIMEOUT, "a leader")
    follower = next(p for p in ctl.release.pod_names() if p != leader)
    return leader, follower


def test_install_three(store: Release) -> None:
    ctl = agree(store)
    assert sorted(m["name"] for m in ctl.members()) == [f"{FULLNAME}-{i}" for i in range(3)]
    client = f"http://{FULLNAME}.default.svc.cluster.local:2379"
    assert ctl.out("put", "installed", "yes", endpoints=[client]).strip() == "OK"
    assert ctl.out("get", "installed", "--print-value-only").strip() == "yes"


def test_partition_of_the_leader(store: Release, tmp_path: Path) -> None:
    ctl = agree(store)
    leader, _ = leader_and_follower(ctl)
    old_id = next(s["Status"]["leader"] for s in ctl.statuses() if leader in s["Endpoint"])
    others = [ctl.endpoint(p) for p in store.pod_names() if p != leader]
    prefix = "w/partition/"
    with writing(ctl, prefix, tmp_path) as writer:
        time.sleep(1.0)
        store.cut(leader)
        try:
            started = time.monotonic()

            def new_leader() -> int:
                statuses = ctl.json("endpoint", "status", endpoints=others)
                leaders = {s["Status"]["leader"] for s in statuses}
                assert len(leaders) == 1 and old_id not in leaders and 0 not in leaders, statuses
                return int(leaders.pop())

            new_id = eventually(new_leader, CUT_SECONDS, "a new leader among the others")
            time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - started)))
            put = ctl.run("put", "during-cut", "x", endpoints=others)
            assert put.returncode == 0, put.stderr
        finally:
            store.heal(leader)
            cut_window = (time.time_ns() - int((time.monotonic() - started) * 1e9), time.time_ns())

        def old_leader_follows() -> None:
            status = ctl.json("endpoint", "status", endpoints=[ctl.endpoint(leader)])[0]
            assert status["Status"]["leader"] == new_id, status

        eventually(old_leader_follows, AGREE_TIMEOUT, "the old leader steps down and rejoins")
        time.sleep(1.0)
    agree(store)
    nothing_lost(ctl, writer.acked, prefix)
    during = [k for k in writer.acked if cut_window[0] <= _written_at(k) <= cut_window[1]]
    # (the writer also tries the cut pod in turn, 1 s timeout each: a few writes a second)
    assert len(during) >= 5, f"only {len(during)} writes acknowledged during the cut"
    value = ctl.out("get", "during-cut", "--print-value-only", endpoints=[ctl.endpoint(leader)])
    assert value.strip() == "x"


def _written_at(key: str) -> int:
    """The writer's keys are PREFIX<time_ns>/<count>."""
    return int(key.rsplit("/", 2)[-2])


def test_kill_9_of_the_leader_pod(store: Release, tmp_path: Path) -> None:
    ctl = agree(store)
    leader, _ = leader_and_follower(ctl)
    address = store.pod(leader).address
    prefix = "w/kill/"
    with writing(ctl, prefix, tmp_path) as writer:
        time.sleep(1.0)
        store.kill_pod(leader)
        time.sleep(2.0)
        agree(store, writes_stopped=False)
    agree(store)
    assert store.pod(leader).restarts >= 1
    assert store.pod(leader).address == address  # the same pod: the container restarted
    nothing_lost(ctl, writer.acked, prefix)


def test_a_follower_deleted_gracefully(store: Release, tmp_path: Path) -> None:
    ctl = agree(store)
    _, follower = leader_and_follower(ctl)
    address = store.pod(follower).address
    prefix = "w/delete/"
    with writing(ctl, prefix, tmp_path) as writer:
        time.sleep(1.0)
        store.delete_pod(follower)
        agree(store, writes_stopped=False)
    agree(store)
    assert store.pod(follower).address != address  # a new pod under the same name
    nothing_lost(ctl, writer.acked, prefix)


def test_a_pod_whose_volume_was_lost_heals(store: Release, tmp_path: Path) -> None:
    ctl = agree(store)
    _, follower = leader_and_follower(ctl)
    prefix = "w/wipe/"
    with writing(ctl, prefix, tmp_path) as writer:
        time.sleep(1.0)
        store.delete_pod(follower, wipe_pvc=True)
        agree(store, writes_stopped=False)
    agree(store)
    nothing_lost(ctl, writer.acked, prefix)
    installed = ctl.out(
        "get", "installed", "--print-value-only", endpoints=[ctl.endpoint(follower)]
    )
    assert installed.strip() == "yes"  # the healed member has the data of before its loss


def test_scale_3_to_5_to_3(store: Release, tmp_path: Path) -> None:
    agree(store)
    prefix = "w/scale/"
    ctl3 = Etcdctl(store)
    first = {
        name: (store.pod(name).address, store.pod(name).restarts) for name in store.pod_names()
    }
    five = [f"{FULLNAME}-{i}" for i in range(5)]

    def removed_before_the_pods_go() -> None:
        # The hook Job has run, the StatefulSet is not changed yet: 5 pods, 3 members (asked
        # of the members that stay: a removed one may not have applied its own removal).
        assert sorted(store.pods) == five
        members = ctl3.members(endpoints=[ctl3.endpoint(p) for p in five[:3]])
        assert sorted(m["name"] for m in members) == five[:3], (
            f"{members}\n{store.events}\n{store.job_results[-1].log}"
        )

    with writing(ctl3, prefix, tmp_path) as writer:
        hooks = store.upgrade(values(5))
        assert all(h.succeeded for h in hooks), [h.log for h in hooks]
        ctl = agree(store, writes_stopped=False)
        assert sorted(m["name"] for m in ctl.members()) == five
        hooks = store.upgrade(values(3), after_hooks=removed_before_the_pods_go)
        assert [h.succeeded for h in hooks] == [True], [h.log for h in hooks]
        ctl = agree(store, writes_stopped=False)
    ctl = agree(store)
    assert sorted(m["name"] for m in ctl.members()) == five[:3]
    # replicaCount lives in the env ConfigMap, not the pod template: no pod was rolled.
    assert {n: (store.pod(n).address, store.pod(n).restarts) for n in five[:3]} == first
    nothing_lost(ctl, writer.acked, prefix)


def test_snapshot_and_defrag_cronjobs_under_writes(store: Release, tmp_path: Path) -> None:
    ctl = agree(store)
    ctl.out("put", "before-snapshot", "kept")
    prefix = "w/cronjobs/"
    with writing(ctl, prefix, tmp_path) as writer:
        snapshot = store.run_cronjob("snapshotter")
        assert snapshot.succeeded, snapshot.log
        defrag = store.run_cronjob("defrag")
        assert defrag.succeeded, defrag.log
    files = sorted(p.name for p in store.kube.pvc_path(SNAPSHOT_CLAIM).glob("db-*"))
    assert len(files) == 1 and files[0].endswith("Z"), files
    agree(store)
    nothing_lost(ctl, writer.acked, prefix)


def test_helm_test(store: Release) -> None:
    agree(store)
    results = store.helm_test()
    assert results, "the chart has no helm test pod"
    assert all(r.succeeded for r in results), [r.log for r in results]


def test_restore_a_new_cluster_from_the_snapshot(store: Release, kube: LocalKube) -> None:
    files = sorted(p.name for p in kube.pvc_path(SNAPSHOT_CLAIM).glob("db-*"))
    assert files, "no snapshot to restore (the CronJob scenario failed)"
    store.uninstall()  # frees the CPU; the snapshot PVC stays
    restored = Release(kube, "restored")
    try:
        restored.install(
            {
                "replicaCount": 3,
                "startFromSnapshot": {
                    "enabled": True,
                    "existingClaim": SNAPSHOT_CLAIM,
                    "snapshotFilename": files[-1],
                },
            }
        )
        ctl = agree(restored)
        assert ctl.out("get", "before-snapshot", "--print-value-only").strip() == "kept"
        assert ctl.out("get", "installed", "--print-value-only").strip() == "yes"
        assert ctl.out("put", "after-restore", "1").strip() == "OK"
    finally:
        restored.uninstall()
