"""The API the scenario tests use: ``LocalKube`` (the network, the client namespace, the PVCs,
the objects that exist) and ``Release`` (a helm release of a chart: install, upgrade, its
StatefulSet's pods, its Jobs, CronJobs and test pods).

``Release`` runs a StatefulSet controller and kubelet in miniature on one thread: it creates
pods 0..n-1 without waiting for one another (Parallel), restarts a container that exits (same
pod, same IP), recreates a deleted pod under the same name with the same PVC (new IP), removes
pods above the replica count highest first, replaces pods of an old template one at a time,
highest first, each after the others are ready (RollingUpdate), probes readiness, and keeps the
hosts files (the cluster DNS) in step: a pod's name resolves once its pod exists; the headless
Service (publishNotReadyAddresses) names every pod, the client Service only the ready ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.k8s_harness.cleanup import run_lock
from tests.k8s_harness.manifests import Manifests, Obj, render
from tests.k8s_harness.network import ClusterNetwork, Host
from tests.k8s_harness.pods import Pod, probe_ready
from tests.k8s_harness.podspec import PodContext, build_container

TICK = 0.2
PROBE_EVERY = 0.5
RESTART_BACKOFF = 1.0
JOB_TIMEOUT = 120.0
MAX_JOB_ATTEMPTS = 3


@dataclass
class JobResult:
    name: str
    code: int | None  # None: timed out (killed)
    log: str
    attempts: int = 1

    @property
    def succeeded(self) -> bool:
        return self.code == 0


class LocalKube:
    """One Kubernetes namespace's worth of cluster: use as a context manager."""

    def __init__(self, workdir: Path, namespace: str = "default") -> None:
        self.workdir = workdir
        self.namespace = namespace
        self.cluster_domain = "cluster.local"
        self.network = ClusterNetwork()
        self.releases: list[Release] = []
        self.extra_objects: list[Obj] = []
        self.client: Host | None = None
        self._stack = contextlib.ExitStack()
        self._names_lock = threading.Lock()

    def __enter__(self) -> LocalKube:
        self._stack.enter_context(run_lock())
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.network.create()
            self._stack.callback(self.network.remove)
            self.client = self.network.add_host("client")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for release in reversed(self.releases):
                release.uninstall()
        finally:
            self._stack.close()

    @property
    def client_host(self) -> Host:
        assert self.client is not None, "LocalKube is not started"
        return self.client

    # -- objects and volumes ------------------------------------------------------------------

    def objects(self) -> Manifests:
        found = list(self.extra_objects)
        for release in self.releases:
            found.extend(release.applied)
        return Manifests.of(found)

    def pvc_path(self, claim: str) -> Path:
        return self.workdir / "pvc" / claim

    def pvc_dir(self, claim: str, uid: int, fs_group: int) -> Path:
        """The claim's directory, made (owned by the pod's user and fsGroup) on first use."""
        path = self.pvc_path(claim)
        if not path.exists():
            path.mkdir(parents=True)
            os.chown(path, uid, fs_group)
            path.chmod(0o2775)
        return path

    def wipe_pvc(self, claim: str) -> None:
        """The volume is lost: its directory is emptied (a new, empty PV in its place)."""
        path = self.pvc_path(claim)
        for entry in path.iterdir() if path.exists() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- names --------------------------------------------------------------------------------

    def refresh_names(self) -> None:
        with self._names_lock:
            table: dict[str, list[str]] = {}
            for release in self.releases:
                for name, addresses in release.names().items():
                    table.setdefault(name, []).extend(addresses)
            self.network.set_names(table)

    def aliases(self, service: str) -> list[str]:
        """The names a Service (or a pod under a headless Service) resolves under from a pod of
        this namespace: short, with the namespace, and fully qualified."""
        ns = self.namespace
        return [
            service,
            f"{service}.{ns}",
            f"{service}.{ns}.svc",
            f"{service}.{ns}.svc.{self.cluster_domain}",
        ]

    # -- running commands in the client namespace -------------------------------------------

    def client_run(
        self, argv: list[str], *, timeout: float = 30.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.client_host.namespace, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    def client_popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.client_host.namespace, *argv], **kwargs
        )


class Release:
    """A helm release of ``chart`` in ``kube`` (``helm template`` plus a miniature controller)."""

    def __init__(self, kube: LocalKube, name: str, chart: Path | None = None) -> None:
        self.kube = kube
        self.name = name
        self.chart = chart
        self.values: dict[str, Any] = {}
        self.rendered = Manifests()
        self.applied: list[Obj] = []
        self.statefulset: Obj | None = None
        self.replicas = 0
        self.pods: dict[str, Pod] = {}
        self.ready: set[str] = set()
        self.events: list[str] = []
        self.job_results: list[JobResult] = []  # every Job run, in order (logs included)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._restart_at: dict[str, float] = {}
        self._last_probe = 0.0
        self._pod_templates: dict[str, str] = {}  # pod -> json of the template it runs

    # -- helm ---------------------------------------------------------------------------------

    def render(self, values: dict[str, Any], upgrade: bool) -> Manifests:
        kwargs = {"chart": self.chart} if self.chart else {}
        return render(self.name, self.kube.namespace, values, upgrade=upgrade, **kwargs)

    def install(self, values: dict[str, Any], manifests: Manifests | None = None) -> None:
        """``helm install``: pre-install hooks, the objects, post-install hooks. ``manifests``
        replaces the chart (hand-written objects, for testing the harness itself)."""
        self.values = values
        rendered = manifests if manifests is not None else self.render(values, upgrade=False)
        if self not in self.kube.releases:
            self.kube.releases.append(self)
        self._run_hooks(rendered, "pre-install")
        self._apply(rendered)
        self._run_hooks(rendered, "post-install")
        self._thread = threading.Thread(target=self._control_loop, name=f"sts-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def upgrade(
        self, values: dict[str, Any], after_hooks: Callable[[], None] | None = None
    ) -> list[JobResult]:
        """``helm upgrade``: the pre-upgrade hook Jobs (a failed one fails the upgrade before
        anything changes), then the objects, then post-upgrade hooks. Returns the hooks' runs.
        ``after_hooks`` runs between the pre-upgrade hooks and the change of the objects."""
        rendered = self.render(values, upgrade=True)
        results = self._run_hooks(rendered, "pre-upgrade")
        failed = [r for r in results if not r.succeeded]
        if failed:
            raise UpgradeFailed(failed)
        if after_hooks is not None:
            after_hooks()
        self.values = values
        self._apply(rendered)
        results += self._run_hooks(rendered, "post-upgrade")
        return results

    def helm_test(self) -> list[JobResult]:
        """``helm test``: every test hook pod, in weight order."""
        return self._run_hooks(self.rendered, "test")

    def _apply(self, rendered: Manifests) -> None:
        with self._lock:
            self.rendered = rendered
            self.applied = rendered.without_hooks()
            sets = [o for o in self.applied if o["kind"] == "StatefulSet"]
            if len(sets) != 1:
                raise ValueError(f"the harness runs one StatefulSet per release, got {len(sets)}")
            self.statefulset = sets[0]
            self.replicas = int(sets[0]["spec"].get("replicas", 1))
        self.kube.refresh_names()

    def _run_hooks(self, rendered: Manifests, phase: str) -> list[JobResult]:
        results = []
        for hook in rendered.hooks(phase):
            if hook["kind"] == "Job":
                results.append(self.run_job(hook, rendered))
            elif hook["kind"] == "Pod":
                results.append(self.run_pod_once(hook["metadata"]["name"], hook, rendered, 1))
        return results

    # -- jobs ---------------------------------------------------------------------------------

    def cronjob(self, suffix: str) -> Obj:
        """The CronJob whose name ends with ``suffix`` (e.g. ``snapshotter``, ``defrag``)."""
        found = [c for c in self.rendered.kind("CronJob") if c["metadata"]["name"].endswith(suffix)]
        if len(found) != 1:
            names = [c["metadata"]["name"] for c in self.rendered.kind("CronJob")]
            raise KeyError(f"no single CronJob ending in {suffix!r} among {names}")
        return found[0]

    def run_cronjob(self, suffix: str) -> JobResult:
        """One run of the CronJob, now (as ``kubectl create job --from=cronjob/...``)."""
        cron = self.cronjob(suffix)
        job = {"metadata": cron["metadata"], "spec": cron["spec"]["jobTemplate"]["spec"]}
        return self.run_job(job, self.rendered)

    def run_job(self, job: Obj, rendered: Manifests | None = None) -> JobResult:
        """Runs the Job's pod to completion, retried up to its backoffLimit (at most
        MAX_JOB_ATTEMPTS runs in all)."""
        spec = job["spec"]
        attempts = min(int(spec.get("backoffLimit", 6)) + 1, MAX_JOB_ATTEMPTS)
        timeout = float(spec.get("activeDeadlineSeconds", JOB_TIMEOUT))
        result = JobResult(job["metadata"]["name"], None, "")
        for attempt in range(1, attempts + 1):
            result = self.run_pod_once(
                job["metadata"]["name"],
                spec["template"],
                rendered or self.rendered,
                attempt,
                timeout=min(timeout, JOB_TIMEOUT),
            )
            result.attempts = attempt
            if result.succeeded:
                break
        self.events.append(f"job {result.name}: exit {result.code} after {result.attempts} runs")
        self.job_results.append(result)
        return result

    def run_pod_once(
        self,
        name: str,
        template: Obj,
        rendered: Manifests,
        attempt: int,
        timeout: float = JOB_TIMEOUT,
    ) -> JobResult:
        """A run-to-completion pod (a Job's, a test's) in its own namespace; its log and code."""
        pod_name = f"{name}-{secrets.token_hex(3)[:5]}"[:63]
        host = self.kube.network.add_host("job")
        pod_dir = self.kube.workdir / "jobs" / pod_name
        pod_dir.mkdir(parents=True)
        pod = Pod(pod_name, host, pod_dir)
        try:
            objects = Manifests.of([*self.kube.objects().objects, *rendered.objects])
            ctx = PodContext(
                pod_name, self.kube.namespace, host.address, objects, pod_dir, self.kube.pvc_dir
            )
            self.kube.refresh_names()  # the job's namespace gets the hosts file
            pod.start(build_container(template, ctx))
            try:
                code: int | None = pod.wait(timeout)
            except subprocess.TimeoutExpired:
                pod.kill()
                code = None
            return JobResult(name, code, pod.log(), attempt)
        finally:
            pod.kill()
            self.kube.network.remove_host(host)

    # -- the StatefulSet ----------------------------------------------------------------------

    @property
    def service_name(self) -> str:
        assert self.statefulset is not None
        return str(self.statefulset["spec"]["serviceName"])

    def pod_names(self) -> list[str]:
        assert self.statefulset is not None
        base = self.statefulset["metadata"]["name"]
        return [f"{base}-{i}" for i in range(self.replicas)]

    def pod_fqdn(self, pod: str) -> str:
        ns = self.kube.namespace
        return f"{pod}.{self.service_name}.{ns}.svc.{self.kube.cluster_domain}"

    def pod_addresses(self) -> dict[str, str]:
        """Each existing pod's IP on the harness bridge, by pod name."""
        with self._lock:
            return {name: pod.address for name, pod in sorted(self.pods.items())}

    def pod(self, name: str) -> Pod:
        with self._lock:
            return self.pods[name]

    def names(self) -> dict[str, list[str]]:
        """This release's part of the cluster DNS."""
        with self._lock:
            pods = dict(self.pods)
            ready = set(self.ready)
            services = [o for o in self.applied if o["kind"] == "Service"]
        table: dict[str, list[str]] = {}
        if self.statefulset is None:
            return table
        for name, pod in pods.items():  # first, fully qualified first: the reverse lookup
            for alias in reversed(self.kube.aliases(f"{name}.{self.service_name}")):
                table[alias] = [pod.address]
        for service in services:
            spec = service.get("spec") or {}
            headless = spec.get("clusterIP") == "None"
            selected = (
                pods
                if headless and spec.get("publishNotReadyAddresses")
                else {n: p for n, p in pods.items() if n in ready}
            )
            if not self._selects(spec.get("selector") or {}):
                continue
            for alias in self.kube.aliases(service["metadata"]["name"]):
                table[alias] = sorted(p.address for p in selected.values())
        return table

    def _selects(self, selector: dict[str, str]) -> bool:
        assert self.statefulset is not None
        labels = self.statefulset["spec"]["template"]["metadata"].get("labels") or {}
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    def kill_pod(self, name: str) -> None:
        """kill -9 of the container: the kubelet restarts it in the same pod."""
        self.pod(name).kill()
        self.events.append(f"killed {name}")

    def delete_pod(self, name: str, grace: float | None = None, wipe_pvc: bool = False) -> None:
        """``kubectl delete pod``: SIGTERM, the grace period, SIGKILL; the pod's namespace goes
        and the controller recreates it under the same name with a new IP. ``wipe_pvc``: its
        volume is lost meanwhile (the new pod starts on an empty PVC)."""
        with self._lock:
            pod = self.pods[name]
            pod.deleted = True
        pod.stop(grace)
        with self._lock:
            self.pods.pop(name, None)
            self.ready.discard(name)
            if wipe_pvc:
                for claim in self._claim_templates():
                    self.kube.wipe_pvc(f"{claim}-{name}")
        self.kube.network.remove_host(pod.host)
        self.kube.refresh_names()
        self.events.append(f"deleted {name}{' and its PVC' if wipe_pvc else ''}")

    def cut(self, name: str) -> None:
        self.kube.network.cut(self.pod(name).host)

    def heal(self, name: str) -> None:
        self.kube.network.heal(self.pod(name).host)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every pod of the replica count exists and passes its readiness probe."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if set(self.pod_names()) <= self.ready and set(self.pods) == set(self.pod_names()):
                    return
            time.sleep(TICK)
        raise AssertionError(f"pods not ready in {timeout}s: {self.describe()}")

    def controller_errors(self) -> list[str]:
        return [e for e in self.events if e.startswith("controller error")]

    def describe(self) -> str:
        with self._lock:
            lines = [f"replicas={self.replicas} ready={sorted(self.ready)}"]
            for name, pod in sorted(self.pods.items()):
                lines.append(
                    f"--- {name} {pod.address} alive={pod.alive()} restarts={pod.restarts}"
                )
                lines.append(pod.log(tail_lines=25))
        return "\n".join(lines)

    def uninstall(self) -> None:
        """Stops the controller and every pod (gracefully, then by force); PVCs stay, as
        helm uninstall leaves a StatefulSet's PVCs."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            pods = list(self.pods.values())
            self.pods.clear()
            self.ready.clear()
        threads = [threading.Thread(target=p.stop, args=(10.0,)) for p in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for pod in pods:
            pod.kill()
            self.kube.network.remove_host(pod.host)
        if self in self.kube.releases:
            self.kube.releases.remove(self)
        self.kube.refresh_names()

    # -- the controller -----------------------------------------------------------------------

    def _claim_templates(self) -> list[str]:
        assert self.statefulset is not None
        return [
            c["metadata"]["name"]
            for c in self.statefulset["spec"].get("volumeClaimTemplates") or []
        ]

    def _template(self) -> Obj:
        assert self.statefulset is not None
        return dict(self.statefulset["spec"]["template"])

    def _control_loop(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self._reconcile()
            except Exception as exc:  # logged; the loop goes on, as a controller does
                self.events.append(f"controller error: {exc!r}")

    def _reconcile(self) -> None:
        changed = False
        with self._lock:
            wanted = self.pod_names()
            template = json.dumps(self._template(), sort_keys=True)
            extra = sorted((n for n in self.pods if n not in wanted), key=_ordinal, reverse=True)
        for name in extra:  # scale-down: highest ordinal first, one at a time
            self.delete_pod(name)
            self._pod_templates.pop(name, None)
            changed = True
        for name in wanted:
            with self._lock:
                pod = self.pods.get(name)
            if pod is None:
                self._create_pod(name, template)
                changed = True
            elif not pod.alive() and not pod.deleted:
                self._restart(pod)
        if self._probe_all():
            changed = True
        if changed:
            self.kube.refresh_names()
        self._roll(wanted, template)

    def _create_pod(self, name: str, template: str) -> None:
        host = self.kube.network.add_host("pod")
        pod_dir = self.kube.workdir / "pods" / f"{name}-{host.address.rsplit('.', 1)[1]}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        pod = Pod(name, host, pod_dir)
        with self._lock:
            self.pods[name] = pod
            self._pod_templates[name] = template
        self.kube.refresh_names()
        self._start_container(pod)
        self.events.append(f"created {name} at {host.address}")

    def _start_container(self, pod: Pod) -> None:
        template = json.loads(self._pod_templates[pod.name])
        ctx = PodContext(
            pod.name,
            self.kube.namespace,
            pod.address,
            self.kube.objects(),
            pod.pod_dir,
            self.kube.pvc_dir,
            self._claim_templates(),
            self.service_name,
        )
        pod.start(build_container(template, ctx))

    def _restart(self, pod: Pod) -> None:
        now = time.monotonic()
        due = self._restart_at.setdefault(pod.name, now + RESTART_BACKOFF)
        if now < due:
            return
        self._restart_at.pop(pod.name, None)
        with self._lock:
            self.ready.discard(pod.name)
        self.events.append(f"restarting {pod.name} (exit {pod.exit_code()})")
        self._start_container(pod)

    def _probe_all(self) -> bool:
        if time.monotonic() - self._last_probe < PROBE_EVERY:
            return False
        self._last_probe = time.monotonic()
        with self._lock:
            pods = list(self.pods.values())
        now_ready = set()
        for pod in pods:
            probe = pod.run.readiness if pod.run else None
            if pod.alive() and (
                probe is None
                or probe_ready(self.kube.network, self.kube.client_host, pod.address, probe)
            ):
                now_ready.add(pod.name)
        with self._lock:
            now_ready &= set(self.pods)
            changed = now_ready != self.ready
            self.ready = now_ready
        return changed

    def _roll(self, wanted: list[str], template: str) -> None:
        """RollingUpdate: when every pod is ready, replace the highest-ordinal pod that runs an
        old template."""
        with self._lock:
            if not set(wanted) <= self.ready:
                return
            stale = [n for n in wanted if self._pod_templates.get(n) != template]
        if stale:
            self.delete_pod(max(stale, key=_ordinal))


def _ordinal(pod_name: str) -> int:
    return int(pod_name.rsplit("-", 1)[1])


class UpgradeFailed(AssertionError):
    def __init__(self, failed: list[JobResult]) -> None:
        super().__init__("; ".join(f"hook {r.name} exited {r.code}:\n{r.log}" for r in failed))
        self.failed = failed


@contextlib.contextmanager
def local_kube(workdir: Path) -> Iterator[LocalKube]:
    with LocalKube(workdir) as kube:
        yield kube
