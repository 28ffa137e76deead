"""The object store's create, get, update, guaranteed update and delete against real servers
(etcdpy and etcd 3.4): the keys and bytes a kube-apiserver would write, and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client import (
    V1ConfigMap,
    V1Container,
    V1Node,
    V1NodeSpec,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1PolicyRule,
    V1Role,
    V1Secret,
    V1Service,
    V1ServiceSpec,
)

from etcdpy.k8s import errors
from etcdpy.k8s.store import ObjectStore
from etcdpy.k8s.types import Preconditions
from tests.k8s.conftest import Server

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    uids = iter(f"uid-{i}" for i in range(1000))
    with ObjectStore.connect(
        server.endpoint, root=server.root, clock=lambda: NOW, new_uid=lambda: next(uids)
    ) as store:
        yield store


def stored(store: ObjectStore, key: str) -> bytes:
    kvs = store.client.range(f"{store.root}/{key}".encode()).kvs
    assert len(kvs) == 1, key
    return bytes(kvs[0].value)


def pod(name: str, image: str = "busybox", labels: dict[str, str] | None = None) -> Any:
    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels=labels),
        spec=V1PodSpec(containers=[V1Container(name="c", image=image)]),
    )


def test_create_writes_the_api_servers_key_and_json(store: ObjectStore) -> None:
    created = store.create(pod("web", labels={"app": "web"}))
    assert type(created).__name__ == "V1Pod"
    assert created.metadata.uid == "uid-0"
    assert created.metadata.generation == 1
    assert created.metadata.namespace == "default"
    raw = stored(store, "pods/default/web")
    assert raw.startswith(b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web",')
    assert raw.endswith(b"}\n")
    value = json.loads(raw)
    assert value["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert "resourceVersion" not in value["metadata"]
    assert value["spec"]["containers"] == [{"image": "busybox", "name": "c"}]
    kv = store.client.range(f"{store.root}/pods/default/web".encode()).kvs[0]
    assert created.metadata.resource_version == str(kv.mod_revision)


@pytest.mark.parametrize(
    ("obj", "key"),
    [
        (
            V1Node(metadata=V1ObjectMeta(name="n1"), spec=V1NodeSpec(unschedulable=True)),
            "minions/n1",
        ),
        (
            V1Service(
                metadata=V1ObjectMeta(name="s1", namespace="ns1"),
                spec=V1ServiceSpec(selector={"a": "b"}),
            ),
            "services/specs/ns1/s1",
        ),
        (
            V1Secret(metadata=V1ObjectMeta(name="sec"), type="Opaque", data={"k": "dg=="}),
            "secrets/default/sec",
        ),
        (
            V1Role(
                metadata=V1ObjectMeta(name="r", namespace="ns1"),
                rules=[V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])],
            ),
            "roles/ns1/r",
        ),
        (
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ep"}},
            "services/endpoints/default/ep",
        ),
        (
            {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"}},
            "controllers/default/rc",
        ),
        (
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}},
            "ingress/default/i",
        ),
    ],
)
def test_each_kind_goes_under_its_etcd_prefix(store: ObjectStore, obj: object, key: str) -> None:
    created = store.create(obj)
    value = json.loads(stored(store, key))
    assert value["metadata"]["name"] == key.rsplit("/", 1)[-1]
    kind = value["kind"]
    back = store.get(kind, value["metadata"]["name"], namespace=value["metadata"].get("namespace"))
    assert type(back) is type(created)


def test_get_returns_the_model_with_its_resource_version(store: ObjectStore) -> None:
    created = store.create(
        V1ConfigMap(metadata=V1ObjectMeta(name="cm", namespace="ns"), data={"a": "<b>&"})
    )
    got = store.get(V1ConfigMap, "cm", namespace="ns")
    assert type(got).__name__ == "V1ConfigMap"
    assert got.data == {"a": "<b>&"}
    assert got.metadata.resource_version == created.metadata.resource_version
    assert b'"a":"\\u003cb\\u003e\\u0026"' in stored(store, "configmaps/ns/cm")


def test_get_missing_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(errors.NotFound) as caught:
        store.get("pods", "nope")
    assert caught.value.message == 'pods "nope" not found'
    assert caught.value.code == 404


def test_create_twice_is_already_exists_and_writes_nothing(store: ObjectStore) -> None:
    first = store.create(pod("dup"))
    with pytest.raises(errors.AlreadyExists) as caught:
        store.create(pod("dup", image="other"))
    assert caught.value.message == 'pods "dup" already exists'
    assert (
        json.loads(stored(store, "pods/default/dup"))["spec"]["containers"][0]["image"] == "busybox"
    )
    assert store.get("pods", "dup").metadata.resource_version == first.metadata.resource_version


def test_update_keeps_identity_and_bumps_generation_on_spec_changes(store: ObjectStore) -> None:
    created = store.create(pod("u"))
    created.metadata.labels = {"x": "y"}
    relabeled = store.update(created)
    assert relabeled.metadata.generation == 1  # metadata only
    relabeled.spec.containers[0].image = "nginx"
    relabeled.metadata.uid = None
    relabeled.metadata.creation_timestamp = None
    changed = store.update(relabeled)
    assert changed.metadata.generation == 2
    assert changed.metadata.uid == "uid-0"
    assert changed.metadata.creation_timestamp == created.metadata.creation_timestamp
    assert int(changed.metadata.resource_version) > int(relabeled.metadata.resource_version)


def test_update_with_a_stale_resource_version_conflicts(store: ObjectStore) -> None:
    created = store.create(pod("c"))
    store.update(created)  # same object: no write
    created.metadata.labels = {"a": "1"}
    store.update(created)
    created.metadata.labels = {"a": "2"}
    with pytest.raises(errors.Conflict) as caught:
        store.update(created)
    assert caught.value.message == (
        'Operation cannot be fulfilled on pods "c": the object has been modified; please apply '
        "your changes to the latest version and try again"
    )
    assert json.loads(stored(store, "pods/default/c"))["metadata"]["labels"] == {"a": "1"}


def test_guaranteed_update_retries_on_conflict(store: ObjectStore) -> None:
    store.create(pod("g"))
    calls = 0

    def bump(current: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else writes between our read and our write
            other = store.get("pods", "g")
            other.metadata.annotations = {"other": "yes"}
            store.update(other)
        current.metadata.labels = {"n": str(calls)}
        return current

    result = store.guaranteed_update("pods", "g", bump)
    assert calls == 2
    assert result.metadata.labels == {"n": "2"}
    assert result.metadata.annotations == {"other": "yes"}


def test_delete_returns_the_object_at_the_deleting_revision(store: ObjectStore) -> None:
    created = store.create(pod("d"))
    deleted = store.delete("pods", "d")
    assert deleted.metadata.name == "d"
    assert int(deleted.metadata.resource_version) > int(created.metadata.resource_version)
    assert store.client.range(f"{store.root}/pods/default/d".encode()).count == 0
    with pytest.raises(errors.NotFound):
        store.delete("pods", "d")


def test_delete_with_a_wrong_uid_precondition_conflicts(store: ObjectStore) -> None:
    store.create(pod("p"))
    with pytest.raises(errors.Conflict) as caught:
        store.delete("pods", "p", preconditions=Preconditions(uid="other"))
    assert caught.value.message.startswith('Operation cannot be fulfilled on pods "p": ')
    assert "Precondition failed: UID in precondition: other, UID in object meta: uid-0" in (
        caught.value.message
    )
    assert store.get("pods", "p").metadata.uid == "uid-0"
    store.delete("pods", "p", preconditions=Preconditions(uid="uid-0"))
