"""reencrypt against real servers (etcdpy and etcd 3.4): identity-stored Secrets become aescbc
ones, a key rotation moves every object to the new key, nothing is lost or changed but the
bytes at rest, a writer racing the rewrite wins, and what no provider reads is reported and left.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence

import pytest

from etcdpy.k8s import errors
from etcdpy.k8s import reencrypt as reencrypt_module
from etcdpy.k8s.encryption import EncryptionConfig
from etcdpy.k8s.encryption_providers import ResourceTransformer
from etcdpy.k8s.etcd import Connection, EtcdClient
from etcdpy.k8s.reencrypt import reencrypt
from etcdpy.pb.etcdserverpb import rpc_pb2
from tests.k8s.conftest import Server

KEY1 = bytes(range(32))
KEY2 = bytes(range(50, 82))
KEY3 = bytes(range(7, 39))


def cfg(
    *providers: dict[str, object], resources: tuple[str, ...] = ("secrets",)
) -> EncryptionConfig:
    return EncryptionConfig.from_document(
        {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [{"resources": list(resources), "providers": list(providers)}],
        }
    )


def aescbc(*keys: tuple[str, bytes]) -> dict[str, object]:
    listed = [{"name": n, "secret": base64.b64encode(k).decode()} for n, k in keys]
    return {"aescbc": {"keys": listed}}


IDENTITY: dict[str, object] = {"identity": {}}


def secret_json(namespace: str, name: str, password: str) -> bytes:
    """A Secret as kube-apiserver stores it in JSON (no resourceVersion)."""
    obj = {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "data": {"password": base64.b64encode(password.encode()).decode()},
        "type": "Opaque",
    }
    return json.dumps(obj, separators=(",", ":")).encode()


def transformer(config: EncryptionConfig, resource: str = "secrets") -> ResourceTransformer:
    found = config.transformer(resource)
    assert found is not None
    return found


@pytest.fixture
def kv(server: Server) -> Iterator[EtcdClient]:
    client = EtcdClient.connect(server.endpoint)
    try:
        yield client
    finally:
        client.close()


def secret_key(server: Server, namespace: str, name: str) -> bytes:
    return f"{server.root}/secrets/{namespace}/{name}".encode()


def stored(kv: EtcdClient, key: bytes) -> tuple[bytes, int, int]:
    kvs = kv.range(key).kvs
    assert len(kvs) == 1, key
    return bytes(kvs[0].value), int(kvs[0].mod_revision), int(kvs[0].lease)


def test_identity_stored_secrets_become_aescbc_and_keys_rotate(
    server: Server, kv: EtcdClient
) -> None:
    originals: dict[bytes, bytes] = {}
    for i in range(12):
        namespace = "default" if i % 2 else "kube-system"
        key = secret_key(server, namespace, f"s{i}")
        originals[key] = secret_json(namespace, f"s{i}", f"hunter{i}")
        kv.put(key, originals[key])
    lease = kv.lease_grant(300)
    leased = secret_key(server, "default", "with-lease")
    originals[leased] = secret_json("default", "with-lease", "leased")
    kv.put(leased, originals[leased], lease=lease)
    configmap = f"{server.root}/configmaps/default/plain".encode()
    kv.put(configmap, b'{"kind":"ConfigMap","apiVersion":"v1","data":{"a":"hunter"}}')
    configmap_before = stored(kv, configmap)

    step1 = cfg(aescbc(("key1", KEY1)), IDENTITY)
    report = reencrypt(kv, step1, root=server.root)
    assert [(r.group_resource, r.rewritten, r.unchanged, r.failed) for r in report.resources] == [
        ("secrets", 13, 0, 0)
    ]
    assert report.ok and report.lines() == ["secrets: rewritten 13, unchanged 0, failed 0"]
    for key, original in originals.items():
        value, _, value_lease = stored(kv, key)
        assert value.startswith(b"k8s:enc:aescbc:v1:key1:")
        assert b"hunter" not in value and b"Secret" not in value
        assert transformer(step1).from_storage(value, key) == (original, False)
        assert value_lease == (lease if key == leased else 0)
    assert stored(kv, configmap) == configmap_before  # not covered: untouched

    again = reencrypt(kv, step1, root=server.root)
    assert (again.rewritten, again.unchanged, again.failed) == (0, 13, 0)

    # Rotation as the Kubernetes docs describe it: the new key second, then first, rewrite,
    # then drop the old key.
    step2 = cfg(aescbc(("key1", KEY1), ("key2", KEY2)), IDENTITY)
    assert reencrypt(kv, step2, root=server.root).rewritten == 0
    step3 = cfg(aescbc(("key2", KEY2), ("key1", KEY1)), IDENTITY)
    rotated = reencrypt(kv, step3, root=server.root)
    assert (rotated.rewritten, rotated.unchanged, rotated.failed) == (13, 0, 0)
    step4 = cfg(aescbc(("key2", KEY2)))
    for key, original in originals.items():
        value, _, _ = stored(kv, key)
        assert value.startswith(b"k8s:enc:aescbc:v1:key2:")
        assert transformer(step4).from_storage(value, key) == (original, False)

    # Turning encryption off: identity first, rewrite, and the plaintext is back as it was.
    off = cfg(IDENTITY, aescbc(("key2", KEY2)))
    decrypted = reencrypt(kv, off, root=server.root)
    assert (decrypted.rewritten, decrypted.unchanged, decrypted.failed) == (13, 0, 0)
    for key, original in originals.items():
        assert stored(kv, key)[0] == original


def test_unreadable_values_are_reported_with_their_key_and_left_alone(
    server: Server, kv: EtcdClient
) -> None:
    good = secret_key(server, "default", "good")
    lost = secret_key(server, "default", "lost-key")
    kv.put(good, secret_json("default", "good", "x"))
    foreign = transformer(cfg(aescbc(("gone", KEY3)))).to_storage(b"{}", lost)
    kv.put(lost, foreign)
    lost_before = stored(kv, lost)

    report = reencrypt(kv, cfg(aescbc(("key1", KEY1)), IDENTITY), root=server.root)
    assert (report.rewritten, report.unchanged, report.failed) == (1, 0, 1)
    assert not report.ok
    [failure] = report.failures
    assert failure.key == lost
    assert failure.reason == "no matching key was found for the provided AES transformer"
    assert report.lines()[-1] == (
        f"failed: {lost.decode()}: no matching key was found for the provided AES transformer"
    )
    assert stored(kv, lost) == lost_before


def test_dry_run_counts_and_writes_nothing(server: Server, kv: EtcdClient) -> None:
    keys = [secret_key(server, "default", f"d{i}") for i in range(3)]
    for i, key in enumerate(keys):
        kv.put(key, secret_json("default", f"d{i}", "pw"))
    before = [stored(kv, key) for key in keys]
    config = cfg(aescbc(("key1", KEY1)), IDENTITY)
    report = reencrypt(kv, config, root=server.root, dry_run=True)
    assert (report.rewritten, report.unchanged, report.failed) == (3, 0, 0)
    assert report.lines() == ["secrets: would rewrite 3, unchanged 0, failed 0"]
    assert [stored(kv, key) for key in keys] == before


def test_pages_through_many_objects_and_only_the_chosen_resources(
    server: Server, kv: EtcdClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reencrypt_module, "PAGE_SIZE", 3)
    for i in range(8):
        kv.put(secret_key(server, f"ns{i % 3}", f"p{i}"), secret_json(f"ns{i % 3}", f"p{i}", "x"))
    deployment = f"{server.root}/deployments/default/web".encode()
    kv.put(deployment, b'{"kind":"Deployment","apiVersion":"apps/v1"}')
    config = cfg(aescbc(("key1", KEY1)), IDENTITY, resources=("secrets", "*.apps"))
    only_deployments = reencrypt(kv, config, root=server.root, resources=["deployments.apps"])
    assert [(r.group_resource, r.rewritten) for r in only_deployments.resources] == [
        ("deployments.apps", 1)
    ]
    report = reencrypt(kv, config, root=server.root)
    counts = {r.group_resource: (r.rewritten, r.unchanged) for r in report.resources}
    assert counts.pop("secrets") == (8, 0)
    assert counts.pop("deployments.apps") == (0, 1)
    # Every other resource of the apps group is covered by "*.apps", and has nothing stored.
    assert set(counts) == {
        "controllerrevisions.apps",
        "daemonsets.apps",
        "replicasets.apps",
        "statefulsets.apps",
    }
    assert set(counts.values()) == {(0, 0)}
    with pytest.raises(errors.BadRequest, match='resource "configmaps" is not covered'):
        reencrypt(kv, config, root=server.root, resources=["configmaps"])


class RacingKV(EtcdClient):
    """The store's client, with one write by "another writer" just before the first Txn."""

    def __init__(self, endpoint: str, race: tuple[bytes, bytes | None]) -> None:
        super().__init__(Connection.of(endpoint))
        self._race: tuple[bytes, bytes | None] | None = race

    def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
    ) -> rpc_pb2.TxnResponse:
        if self._race is not None:
            key, value = self._race
            self._race = None
            if value is None:
                self.delete(key)
            else:
                self.put(key, value)
        return super().txn(compare, success, failure)


def test_a_concurrent_writer_wins_and_its_write_is_kept(server: Server, kv: EtcdClient) -> None:
    config = cfg(aescbc(("key1", KEY1)), IDENTITY)
    key = secret_key(server, "default", "raced")
    # The racing writer stores plaintext (an API server still on identity): retried, rewritten
    # with the racer's content, not the content first read.
    kv.put(key, secret_json("default", "raced", "first"))
    racer = RacingKV(server.endpoint, (key, secret_json("default", "raced", "second")))
    try:
        report = reencrypt(racer, config, root=server.root)
    finally:
        racer.close()
    assert (report.rewritten, report.unchanged, report.failed) == (1, 0, 0)
    value, _, _ = stored(kv, key)
    assert transformer(config).from_storage(value, key) == (
        secret_json("default", "raced", "second"),
        False,
    )

    # The racer writes with the current provider: nothing left to do.
    kv.put(key, secret_json("default", "raced", "third"))
    current = transformer(config).to_storage(secret_json("default", "raced", "fourth"), key)
    racer = RacingKV(server.endpoint, (key, current))
    try:
        report = reencrypt(racer, config, root=server.root)
    finally:
        racer.close()
    assert (report.rewritten, report.unchanged, report.failed) == (0, 1, 0)
    assert stored(kv, key)[0] == current

    # The racer deletes it: counted as gone, not recreated.
    kv.put(key, secret_json("default", "raced", "fifth"))
    racer = RacingKV(server.endpoint, (key, None))
    try:
        report = reencrypt(racer, config, root=server.root)
    finally:
        racer.close()
    assert [(r.rewritten, r.gone) for r in report.resources] == [(0, 1)]
    assert "deleted meanwhile 1" in report.lines()[0]
    assert kv.range(key).kvs == []
