"""Rewrite stored objects with the current encryption provider: what ``kubectl get secrets -A -o
json | kubectl replace -f -`` does after a key rotation, straight on etcd and without changing the
objects.

Each value of the configured resources is read with the configuration; one that is stale (not
written by the first provider and its first key) is written again with the first provider, in a
Txn guarded by the value's mod_revision: a writer that changed the object meanwhile wins, and the
object is looked at again (it may already be current). A value no provider can read is reported
with its key and left as it is. With ``dry_run`` nothing is written: the counts say what would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from etcdpy.k8s import errors
from etcdpy.k8s.encryption import EncryptionConfig
from etcdpy.k8s.encryption_providers import ResourceTransformer, TransformError
from etcdpy.k8s.etcd import EtcdClient
from etcdpy.k8s.resources import DEFAULT_REGISTRY, Resource, ResourceRegistry
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.mvccpb import kv_pb2

__all__ = ["KeyFailure", "ReencryptReport", "ResourceReport", "reencrypt"]

PAGE_SIZE = 500
# How often one object is looked at again when writers keep changing it under us.
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class KeyFailure:
    """An object that was not rewritten: its etcd key and why (never the value)."""

    key: bytes
    reason: str


@dataclass
class ResourceReport:
    """One resource's counts: ``rewritten`` with the current provider (or, dry run, would be),
    ``unchanged`` (already current), ``failed`` (see ``failures``), ``gone`` (deleted while being
    rewritten)."""

    group_resource: str
    prefix: bytes
    rewritten: int = 0
    unchanged: int = 0
    failed: int = 0
    gone: int = 0
    failures: list[KeyFailure] = field(default_factory=list)

    def line(self, dry_run: bool = False) -> str:
        verb = "would rewrite" if dry_run else "rewritten"
        text = (
            f"{self.group_resource}: {verb} {self.rewritten}, unchanged {self.unchanged}, "
            f"failed {self.failed}"
        )
        return text + (f", deleted meanwhile {self.gone}" if self.gone else "")


@dataclass
class ReencryptReport:
    resources: list[ResourceReport]
    dry_run: bool = False

    @property
    def rewritten(self) -> int:
        return sum(r.rewritten for r in self.resources)

    @property
    def unchanged(self) -> int:
        return sum(r.unchanged for r in self.resources)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.resources)

    @property
    def failures(self) -> list[KeyFailure]:
        return [f for r in self.resources for f in r.failures]

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def lines(self) -> list[str]:
        """One line per resource, then one per failed key (``etcdpy k8s reencrypt`` prints them)."""
        out = [r.line(self.dry_run) for r in self.resources]
        out += [
            f"failed: {f.key.decode('utf-8', 'backslashreplace')}: {f.reason}"
            for f in self.failures
        ]
        return out


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end of every key starting with ``prefix`` (clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


def _targets(
    config: EncryptionConfig,
    registry: ResourceRegistry,
    root: str,
    resources: Sequence[str] | None,
) -> list[Resource]:
    """The resources to rewrite, one per etcd prefix: resources stored under another's prefix
    (events.events.k8s.io under core's events) are that one, as the API server stores them."""
    owners: dict[bytes, Resource] = {}
    for resource in registry.resources():
        owners.setdefault(resource.prefix(root), resource)
    if resources is None:
        chosen = [r for r in owners.values() if config.transformer(r.group_resource) is not None]
    else:
        chosen = []
        for name in resources:
            resolved = registry.resolve(name)
            resource = owners.get(resolved.prefix(root), resolved)
            if config.transformer(resource.group_resource) is None:
                raise errors.BadRequest(
                    f'resource "{resource.group_resource}" is not covered by the encryption '
                    "provider configuration"
                )
            if resource not in chosen:
                chosen.append(resource)
    return chosen


class _Rewriter:
    def __init__(self, client: EtcdClient, transformer: ResourceTransformer, dry_run: bool) -> None:
        self._client = client
        self._transformer = transformer
        self._dry_run = dry_run

    def run(self, report: ResourceReport) -> None:
        start, end = report.prefix, _prefix_end(report.prefix)
        while True:
            page = self._client.range(start, end, limit=PAGE_SIZE)
            for kv in page.kvs:
                self._one(kv, report)
            if not page.more or not page.kvs:
                return
            start = bytes(page.kvs[-1].key) + b"\x00"

    def _one(self, kv: kv_pb2.KeyValue, report: ResourceReport) -> None:
        for _ in range(MAX_ATTEMPTS):
            key = bytes(kv.key)
            try:
                outcome = self._attempt(kv)
            except TransformError as err:
                report.failed += 1
                report.failures.append(KeyFailure(key, err.reason))
                return
            except errors.ServiceUnavailable:
                raise
            except errors.StatusError as err:  # e.g. the encrypted value is over etcd's limit
                report.failed += 1
                report.failures.append(KeyFailure(key, err.message))
                return
            if isinstance(outcome, str):
                if outcome == "unchanged":
                    report.unchanged += 1
                else:
                    report.rewritten += 1
                return
            if outcome is None:
                report.gone += 1
                return
            kv = outcome  # another writer changed it: look at what it wrote
        report.failed += 1
        report.failures.append(
            KeyFailure(bytes(kv.key), f"changed by other writers {MAX_ATTEMPTS} times; try again")
        )

    def _attempt(self, kv: kv_pb2.KeyValue) -> str | kv_pb2.KeyValue | None:
        """ "unchanged", "rewritten", or (the guard failed) what the key holds now."""
        key = bytes(kv.key)
        plain, stale = self._transformer.from_storage(bytes(kv.value), key)
        if not stale:
            return "unchanged"
        if self._dry_run:
            return "rewritten"
        return self._write(kv, self._transformer.to_storage(plain, key))

    def _write(self, kv: kv_pb2.KeyValue, value: bytes) -> str | kv_pb2.KeyValue | None:
        """Puts ``value`` if the key is still at kv's revision: "rewritten", else what is there
        now (None: deleted)."""
        guard = rpc_pb2.Compare(
            key=kv.key,
            target=rpc_pb2.Compare.MOD,
            result=rpc_pb2.Compare.EQUAL,
            mod_revision=kv.mod_revision,
        )
        # The object keeps its lease (events expire); the guard fails if the lease took it.
        put = rpc_pb2.RequestOp(
            request_put=rpc_pb2.PutRequest(key=kv.key, value=value, lease=kv.lease)
        )
        reread = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=kv.key))
        response = self._client.txn([guard], [put], [reread])
        if response.succeeded:
            return "rewritten"
        kvs = response.responses[0].response_range.kvs
        return kvs[0] if kvs else None


def reencrypt(
    client: EtcdClient,
    config: EncryptionConfig,
    *,
    root: str = "/registry",
    resources: Sequence[str] | None = None,
    dry_run: bool = False,
    registry: ResourceRegistry = DEFAULT_REGISTRY,
) -> ReencryptReport:
    """Rewrites every stale object of ``resources`` (names kubectl accepts; default: every
    resource of ``registry`` that ``config`` covers) with the first provider; see the module's
    docstring. An uncovered resource named in ``resources`` -> errors.BadRequest."""
    reports: list[ResourceReport] = []
    for resource in _targets(config, registry, root, resources):
        transformer = config.transformer(resource.group_resource)
        assert transformer is not None  # _targets keeps covered resources only
        report = ResourceReport(resource.group_resource, resource.prefix(root))
        _Rewriter(client, transformer, dry_run).run(report)
        reports.append(report)
    return ReencryptReport(reports, dry_run)
