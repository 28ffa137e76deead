"""A ReplicaSet controller, as kube-controller-manager's (pkg/controller/replicaset): for each
apps/v1 ReplicaSet, keep spec.replicas active pods that match spec.selector and that it owns
(an ownerReference with controller=true and its uid).

One work queue keyed by ReplicaSet ("namespace/name"), fed by two informers (ReplicaSets, and
Pods mapped to their owner). A sync:

1. claims pods: adopts matching orphans (after re-reading the ReplicaSet, so a deleted and
   re-created one never adopts), releases owned pods that no longer match;
2. if its expectations are met (every create and delete it made is seen in the pod informer),
   creates the missing pods from spec.template with generateName "<name>-" in slow-start
   batches (1, 2, 4, ...; at most ``burst_replicas`` per sync), or deletes the extras in the
   API server's order (unscheduled, then not running, not ready, ready for less time, more
   restarts, newer first);
3. writes status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration, the ReplicaFailure condition) with a guaranteed update.

Pods being deleted (deletionTimestamp set) and finished pods count for nothing.
"""

from __future__ import annotations

import argparse
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry

from etcdpy.k8s import errors
from etcdpy.k8s.cache import DeletedFinalStateUnknown, namespace_index
from etcdpy.k8s.controller import Controller
from etcdpy.k8s.controllers.clock import Clock, format_time, utc_now
from etcdpy.k8s.controllers.command import CommonOptions, add_common_arguments, run_elected
from etcdpy.k8s.controllers.expectations import Expectations
from etcdpy.k8s.controllers.podutil import (
    Obj,
    as_dict,
    being_deleted,
    controller_ref,
    deletion_rank,
    is_active,
    is_available,
    is_ready,
    labels,
    metadata,
    mutable,
    owner_reference,
    spec,
    status,
)
from etcdpy.k8s.informer import Informer
from etcdpy.k8s.meta import cache_key
from etcdpy.k8s.selectors import LabelSelector
from etcdpy.k8s.store import ObjectStore
from etcdpy.k8s.types import KubeObject, Preconditions
from etcdpy.observability.logging import get_logger

BURST_REPLICAS = 500  # replicaset.BurstReplicas
SLOW_START_INITIAL_BATCH = 1  # controller.SlowStartInitialBatchSize
RS_KIND, RS_API_VERSION, RS_RESOURCE = "ReplicaSet", "apps/v1", "replicasets.apps"
# utilrand's alphabet: no vowels, no 0/1/3, so generated names never spell words
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_NAME_ATTEMPTS = 5

log = get_logger("etcdpy.k8s.controllers.replicaset")


def pod_selector(rs: Obj) -> LabelSelector:
    """The pods a ReplicaSet's selector claims; an empty selector claims none (the API server
    refuses one; claiming every pod of the namespace would be the worst reading of it)."""
    return LabelSelector.from_object(spec(rs).get("selector") or None)


class _Skip(Exception):
    """Raised inside a guaranteed update to leave the object as it is."""


def generated_name(prefix: str) -> str:
    """The API server's SimpleNameGenerator: the prefix (cut to 58) and 5 random characters."""
    return prefix[:58] + "".join(random.choices(_NAME_ALPHABET, k=5))


def pod_from_template(rs: Obj) -> Obj:
    """controller.GetPodFromTemplate: the template's labels, annotations, finalizers and spec,
    owned by the ReplicaSet, named by the API server from "<name>-"."""
    template = spec(rs).get("template") or {}
    template_meta = template.get("metadata") or {}
    pod_meta: dict[str, Any] = {
        "generateName": f"{metadata(rs).get('name', '')}-",
        "namespace": metadata(rs).get("namespace") or "default",
        "ownerReferences": [owner_reference(rs, RS_API_VERSION, RS_KIND)],
    }
    for field in ("labels", "annotations", "finalizers"):
        if template_meta.get(field):
            pod_meta[field] = template_meta[field]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": dict(template.get("spec") or {}),
    }


def count_field(rs: Obj, field: str, default: int) -> int:
    """spec.replicas or spec.minReadySeconds: a whole number >= 0, else errors.Invalid (the
    API server's validation would have refused it; this store does not validate)."""
    value = spec(rs).get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.Invalid(
            f'ReplicaSet.apps "{metadata(rs).get("name", "")}" is invalid: spec.{field}: '
            f"Invalid value: {value!r}: must be greater than or equal to 0"
        )
    return value


def _replica_failure(rs: Obj, owned: int, error: Exception | None, now: str) -> list[Any]:
    """status.conditions with ReplicaFailure set while a create/delete fails, removed after."""
    conditions = [
        c for c in status(rs).get("conditions") or [] if c.get("type") != "ReplicaFailure"
    ]
    current = next(
        (c for c in status(rs).get("conditions") or [] if c.get("type") == "ReplicaFailure"),
        None,
    )
    if error is None:
        return conditions
    if current is not None:
        return [*conditions, current]
    wanted = count_field(rs, "replicas", 1)
    reason = "FailedCreate" if owned < wanted else "FailedDelete"
    failure = {
        "type": "ReplicaFailure",
        "status": "True",
        "lastTransitionTime": now,
        "reason": reason,
        "message": str(error),
    }
    return [*conditions, failure]


def calculate_status(
    rs: Obj, owned: list[Obj], error: Exception | None, clock: Clock
) -> dict[str, Any]:
    """replicaset.calculateStatus."""
    now = clock()
    template_labels = ((spec(rs).get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = count_field(rs, "minReadySeconds", 0)
    new = dict(status(rs))
    new["replicas"] = len(owned)
    new["fullyLabeledReplicas"] = sum(
        1 for pod in owned if all(labels(pod).get(k) == v for k, v in template_labels.items())
    )
    new["readyReplicas"] = sum(1 for pod in owned if is_ready(pod))
    new["availableReplicas"] = sum(1 for pod in owned if is_available(pod, min_ready, now))
    conditions = _replica_failure(rs, len(owned), error, format_time(now))
    if conditions:
        new["conditions"] = conditions
    else:
        new.pop("conditions", None)
    if metadata(rs).get("generation") is not None:
        new["observedGeneration"] = metadata(rs)["generation"]
    return new


class ReplicaSetController:
    """Runs until ``run``'s stop event is set; thread-safe handlers, ``workers`` syncs at once."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        workers: int = 5,
        clock: Clock = utc_now,
        registry: CollectorRegistry | None = None,
        burst_replicas: int = BURST_REPLICAS,
        resync_period: float = 0.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._burst = burst_replicas
        registry = registry if registry is not None else CollectorRegistry()
        self.expectations = Expectations()
        self.replicasets = Informer(
            store.lister_watcher(RS_RESOURCE),
            resync_period=resync_period,
            indexers={"namespace": namespace_index},
            name="replicasets",
        )
        self.pods = Informer(
            store.lister_watcher("pods"),
            indexers={"namespace": namespace_index},
            name="pods",
        )
        self.controller = Controller("replicaset", self.sync, workers=workers, registry=registry)
        self.replicasets.add_event_handlers(
            on_add=self._rs_changed,
            on_update=lambda old, new: self._rs_changed(new),
            on_delete=self._rs_deleted,
        )
        self.pods.add_event_handlers(
            on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted
        )

    # -- running ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, sync_timeout: float = 60.0) -> None:
        self.replicasets.start()
        self.pods.start()
        try:
            deadline_ok = self.replicasets.wait_for_sync(sync_timeout) and self.pods.wait_for_sync(
                sync_timeout
            )
            if not deadline_ok:
                raise errors.ServiceUnavailable("replicaset: informers did not sync in time")
            log.info("replicaset controller started")
            self.controller.run(stop)
        finally:
            self.pods.stop()
            self.replicasets.stop()

    # -- event handlers (informer threads) ----------------------------------------------------

    def _rs_changed(self, obj: KubeObject) -> None:
        self.controller.enqueue(cache_key(obj))

    def _rs_deleted(self, obj: KubeObject | DeletedFinalStateUnknown) -> None:
        key = obj.key if isinstance(obj, DeletedFinalStateUnknown) else cache_key(obj)
        self.expectations.forget(key)
        self.controller.enqueue(key)

    def _owner_key(self, pod: Obj, ref: Mapping[str, Any] | None) -> str | None:
        """The key of the cached ReplicaSet this controller reference names (uid checked)."""
        if ref is None or ref.get("kind") != RS_KIND:
            return None
        key = f"{metadata(pod).get('namespace', '')}/{ref.get('name', '')}"
        cached = self.replicasets.indexer.get_by_key(key)
        if cached is None or metadata(as_dict(cached)).get("uid") != ref.get("uid"):
            return None
        return key

    def _selecting(self, pod: Obj) -> list[str]:
        """Keys of the ReplicaSets in the pod's namespace whose selector matches it."""
        keys = []
        for cached in self.replicasets.indexer.by_index(
            "namespace", str(metadata(pod).get("namespace", ""))
        ):
            rs = as_dict(cached)
            try:
                matches = pod_selector(rs).matches(labels(pod))
            except errors.StatusError:
                continue
            if matches:
                keys.append(cache_key(rs))
        return keys

    def _pod_added(self, obj: KubeObject) -> None:
        pod = as_dict(obj)
        if being_deleted(pod):
            self._pod_deleted(pod)
            return
        owner = self._owner_key(pod, controller_ref(pod))
        if owner is not None:
            self.expectations.creation_observed(owner)
            self.controller.enqueue(owner)
            return
        if controller_ref(pod) is None:
            for key in self._selecting(pod):
                self.controller.enqueue(key)

    def _pod_updated(self, old_obj: KubeObject, new_obj: KubeObject) -> None:
        old, new = as_dict(old_obj), as_dict(new_obj)
        if metadata(old).get("resourceVersion") == metadata(new).get("resourceVersion"):
            return  # a resync: nothing changed
        labels_changed = labels(old) != labels(new)
        if being_deleted(new):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        ref_changed = old_ref != new_ref
        if ref_changed and old_ref is not None:
            previous = self._owner_key(old, old_ref)
            if previous is not None:
                self.controller.enqueue(previous)
        if new_ref is not None:
            owner = self._owner_key(new, new_ref)
            if owner is not None:
                self.controller.enqueue(owner)
                self._requeue_for_availability(owner, old, new)
            return
        if labels_changed or ref_changed:
            for key in self._selecting(new):
                self.controller.enqueue(key)

    def _requeue_for_availability(self, owner: str, old: Obj, new: Obj) -> None:
        """A pod that just became ready becomes available minReadySeconds later: look again."""
        cached = self.replicasets.indexer.get_by_key(owner)
        if cached is None or is_ready(old) or not is_ready(new):
            return
        try:
            min_ready = count_field(as_dict(cached), "minReadySeconds", 0)
        except errors.Invalid:
            return
        if min_ready > 0:
            self.controller.queue.add_after(owner, float(min_ready) + 1.0)

    def _pod_deleted(self, obj: KubeObject | DeletedFinalStateUnknown) -> None:
        pod = as_dict(obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj)
        owner = self._owner_key(pod, controller_ref(pod))
        if owner is None:
            return
        self.expectations.deletion_observed(owner, cache_key(pod))
        self.controller.enqueue(owner)

    # -- the sync (worker threads) ------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        """One ReplicaSet's sync; returns seconds after which to look again, if any."""
        cached = self.replicasets.indexer.get_by_key(key)
        if cached is None:
            self.expectations.forget(key)
            return None
        rs = as_dict(cached)
        try:
            matcher = pod_selector(rs)
            count_field(rs, "replicas", 1)
            count_field(rs, "minReadySeconds", 0)
        except (errors.BadRequest, errors.Invalid) as exc:
            log.error("replicaset is invalid", replicaset=key, error=str(exc))
            return None  # retrying cannot help until the object changes
        needs_sync = self.expectations.satisfied(key)
        namespace = str(metadata(rs).get("namespace", ""))
        active = [
            pod
            for pod in (as_dict(p) for p in self.pods.indexer.by_index("namespace", namespace))
            if is_active(pod)
        ]
        owned = self._claim(rs, matcher, active)
        failure: errors.StatusError | None = None
        if needs_sync and not being_deleted(rs):
            try:
                self._manage(key, rs, owned)
            except errors.StatusError as exc:
                failure = exc
        self._write_status(rs, owned, failure)
        if failure is not None:
            raise failure
        return self._until_available(rs, owned)

    def _until_available(self, rs: Obj, owned: list[Obj]) -> float | None:
        """Ready pods become available minReadySeconds later: when to look again."""
        min_ready = count_field(rs, "minReadySeconds", 0)
        now = self._clock()
        ready = sum(1 for pod in owned if is_ready(pod))
        available = sum(1 for pod in owned if is_available(pod, min_ready, now))
        if min_ready > 0 and ready == len(owned) and available != ready:
            return float(min_ready)
        return None

    # -- claiming (PodControllerRefManager) ---------------------------------------------------

    def _claim(self, rs: Obj, matcher: LabelSelector, pods: list[Obj]) -> list[Obj]:
        uid = metadata(rs).get("uid")
        claimed: list[Obj] = []
        fresh: list[bool] = []  # the adoption check, made once per sync and only if needed
        for pod in pods:
            ref = controller_ref(pod)
            if ref is not None:
                if ref.get("uid") != uid:
                    continue  # another controller's
                if matcher.matches(labels(pod)):
                    claimed.append(pod)
                elif not being_deleted(rs):
                    self._release(rs, pod)
                continue
            if being_deleted(rs) or not matcher.matches(labels(pod)):
                continue
            if not fresh:
                fresh.append(self._can_adopt(rs))
            if fresh[0]:
                adopted = self._adopt(rs, pod)
                if adopted is not None:
                    claimed.append(adopted)
        return claimed

    def _can_adopt(self, rs: Obj) -> bool:
        """RecheckDeletionTimestamp: the live ReplicaSet is the one cached and not deleting."""
        try:
            live = as_dict(
                self._store.get(
                    RS_RESOURCE,
                    str(metadata(rs).get("name")),
                    namespace=str(metadata(rs).get("namespace")),
                )
            )
        except errors.NotFound:
            return False
        return metadata(live).get("uid") == metadata(rs).get("uid") and not being_deleted(live)

    def _adopt(self, rs: Obj, pod: Obj) -> Obj | None:
        def add_owner(current: KubeObject) -> KubeObject:
            updated = mutable(current)
            if controller_ref(updated) is not None or being_deleted(updated):
                raise _Skip
            refs = metadata(updated).setdefault("ownerReferences", [])
            refs.append(owner_reference(rs, RS_API_VERSION, RS_KIND))
            return updated

        return self._update_pod(pod, add_owner, "adopted")

    def _release(self, rs: Obj, pod: Obj) -> None:
        uid = metadata(rs).get("uid")

        def drop_owner(current: KubeObject) -> KubeObject:
            updated = mutable(current)
            refs = metadata(updated).get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") != uid]
            if len(kept) == len(refs):
                raise _Skip
            metadata(updated)["ownerReferences"] = kept
            return updated

        self._update_pod(pod, drop_owner, "released")

    def _update_pod(
        self, pod: Obj, change: Callable[[KubeObject], KubeObject], what: str
    ) -> Obj | None:
        try:
            updated = self._store.guaranteed_update(
                "pods",
                str(metadata(pod).get("name")),
                change,
                namespace=str(metadata(pod).get("namespace")),
                preconditions=Preconditions(uid=str(metadata(pod).get("uid"))),
            )
        except (_Skip, errors.NotFound, errors.Conflict):
            return None  # gone, replaced, or claimed by someone else meanwhile
        log.info(f"pod {what}", pod=cache_key(pod))
        return as_dict(updated)

    # -- creating and deleting ----------------------------------------------------------------

    def _manage(self, key: str, rs: Obj, owned: list[Obj]) -> None:
        wanted = count_field(rs, "replicas", 1)
        diff = len(owned) - wanted
        if diff < 0:
            self._create(key, rs, min(-diff, self._burst))
        elif diff > 0:
            self._delete(key, owned, min(diff, self._burst))

    def _create_one(self, rs: Obj) -> None:
        pod = pod_from_template(rs)
        prefix = pod["metadata"]["generateName"]
        for attempt in range(_NAME_ATTEMPTS):
            pod["metadata"]["name"] = generated_name(prefix)
            try:
                self._store.create(pod)
                return
            except errors.AlreadyExists:
                if attempt == _NAME_ATTEMPTS - 1:
                    raise

    def _create(self, key: str, rs: Obj, count: int) -> None:
        """slowStartBatch: batches of 1, 2, 4, ... in parallel; stop at a batch that fails."""
        self.expectations.expect_creations(key, count)
        created, batch, failure = 0, SLOW_START_INITIAL_BATCH, None
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="rs-create") as pool:
            while created < count and failure is None:
                size = min(batch, count - created)
                outcomes = list(
                    pool.map(lambda _: self._attempt(self._create_one, rs), range(size))
                )
                created += sum(1 for outcome in outcomes if outcome is None)
                failure = next((o for o in outcomes if o is not None), None)
                batch *= 2
        for _ in range(count - created):
            self.expectations.creation_observed(key)  # never coming: do not wait for them
        if created:
            log.info("created pods", replicaset=key, count=created)
        if failure is not None:
            raise failure

    @staticmethod
    def _attempt(action: Callable[[Obj], None], arg: Obj) -> errors.StatusError | None:
        try:
            action(arg)
        except errors.StatusError as exc:
            return exc
        return None

    def _delete(self, key: str, owned: list[Obj], count: int) -> None:
        now = self._clock()
        doomed = sorted(owned, key=lambda pod: deletion_rank(pod, now))[:count]
        self.expectations.expect_deletions(key, [cache_key(pod) for pod in doomed])

        def delete(pod: Obj) -> None:
            try:
                self._store.delete(
                    "pods",
                    str(metadata(pod).get("name")),
                    namespace=str(metadata(pod).get("namespace")),
                    preconditions=Preconditions(uid=str(metadata(pod).get("uid"))),
                )
            except errors.StatusError:
                # the informer will not see this deletion: stop waiting for it
                self.expectations.deletion_observed(key, cache_key(pod))
                raise

        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="rs-delete") as pool:
            outcomes = list(pool.map(lambda pod: self._attempt(delete, pod), doomed))
        failures = [o for o in outcomes if o is not None and not isinstance(o, errors.NotFound)]
        log.info("deleted pods", replicaset=key, count=len(doomed) - len(failures))
        if failures:
            raise failures[0]

    # -- status -------------------------------------------------------------------------------

    def _write_status(self, rs: Obj, owned: list[Obj], failure: Exception | None) -> None:
        new = calculate_status(rs, owned, failure, self._clock)
        old = status(rs)
        if all(old.get(k) == new.get(k) for k in set(old) | set(new)):
            return

        def set_status(current: KubeObject) -> KubeObject:
            updated = mutable(current)
            updated["status"] = new
            return updated

        try:
            self._store.guaranteed_update(
                RS_RESOURCE,
                str(metadata(rs).get("name")),
                set_status,
                namespace=str(metadata(rs).get("namespace")),
                preconditions=Preconditions(uid=str(metadata(rs).get("uid"))),
            )
        except errors.NotFound:
            return  # deleted meanwhile


class ReplicaSetCommand:
    """`etcdpy k8s controller replicaset`."""

    summary = "keep each ReplicaSet's pods at spec.replicas (create, adopt, delete, status)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_common_arguments(parser, default_workers=5)
        parser.add_argument(
            "--burst-replicas",
            type=int,
            default=BURST_REPLICAS,
            help="most pods created or deleted by one sync (default %(default)s)",
        )

    def run(self, args: argparse.Namespace, store: ObjectStore) -> int:
        options = CommonOptions.from_args("replicaset", args, store)

        def start(stop: threading.Event) -> None:
            ReplicaSetController(
                store,
                workers=options.workers,
                registry=options.registry,
                burst_replicas=max(1, int(args.burst_replicas)),
            ).run(stop)

        return run_elected(options, store, start)
