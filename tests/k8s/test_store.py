"""The object store's create, get, update, guaranteed update and delete against real servers
(etcdpy and etcd 3.4): the keys and bytes a kube-apiserver would write, and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import (
    V1ConfigMap,
    V1Node,
    V1NodeSpec,
    V1ObjectMeta,
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
from tests.k8s.store_support import NOW, make_store, pod, stored


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    with make_store(server) as store:
        yield store


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


def test_generate_name_gets_five_random_characters(store: ObjectStore) -> None:
    created = store.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}}
    )
    assert created.metadata.name.startswith("cfg-") and len(created.metadata.name) == 9
    stored(store, f"configmaps/default/{created.metadata.name}")


def test_cluster_scoped_objects_drop_a_namespace(store: ObjectStore) -> None:
    store.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "x"}}
    )
    assert "namespace" not in json.loads(stored(store, "namespaces/n"))["metadata"]
    assert store.get("ns", "n", namespace="ignored").metadata.name == "n"


def test_finalizers_turn_a_delete_into_a_mark(store: ObjectStore) -> None:
    created = store.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "f", "finalizers": ["example.com/keep"]},
        }
    )
    marked = store.delete("configmaps", "f", grace_period_seconds=0)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 0
    assert json.loads(stored(store, "configmaps/default/f"))["metadata"]["deletionTimestamp"] == (
        "2024-05-01T12:00:00Z"
    )
    again = store.delete("configmaps", "f")  # already marked: unchanged
    assert again.metadata.resource_version == marked.metadata.resource_version
    marked.metadata.finalizers = []
    marked.metadata.deletion_timestamp = None  # an update can never remove it
    gone = store.update(marked)
    assert int(gone.metadata.resource_version) > int(created.metadata.resource_version)
    assert store.client.range(f"{store.root}/configmaps/default/f".encode()).count == 0


def test_ttl_attaches_a_lease(store: ObjectStore) -> None:
    store.create(pod("short"), ttl=30)
    kv = store.client.range(f"{store.root}/pods/default/short".encode()).kvs[0]
    assert kv.lease != 0
    assert 0 < store.client.lease_keepalive_once(kv.lease) <= 30
    store.client.lease_revoke(kv.lease)
    assert store.client.range(f"{store.root}/pods/default/short".encode()).count == 0


def test_get_with_a_resource_version(store: ObjectStore) -> None:
    created = store.create(pod("rv"))
    assert store.get("pods", "rv", resource_version=created.metadata.resource_version)
    with pytest.raises(errors.TooLargeResourceVersion) as caught:
        store.get("pods", "rv", resource_version="99999999")
    assert caught.value.message.startswith(
        "Timeout: Too large resource version: 99999999, current: "
    )
    assert caught.value.details["causes"][0]["reason"] == "ResourceVersionTooLarge"
    with pytest.raises(errors.BadRequest) as bad:
        store.get("pods", "rv", resource_version="12a")
    assert bad.value.message == (
        'invalid resource version: resourceVersion: Invalid value: "12a": '
        'strconv.ParseUint: parsing "12a": invalid syntax'
    )


def keys_under(store: ObjectStore) -> int:
    root = store.root.encode() + b"/"
    return int(store.client.range(root, root[:-1] + b"0", count_only=True).count)


@pytest.mark.parametrize(
    ("obj", "error", "message"),
    [
        (
            {"apiVersion": "v1", "kind": "Pod", "metadata": {}},
            errors.Invalid,
            'Pod "" is invalid: metadata.name: Required value: name or generateName is required',
        ),
        (
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "../x"}},
            errors.Invalid,
            'Pod "../x" is invalid: metadata.name: Invalid value: "../x": may not contain \'/\'',
        ),
        (
            {"metadata": {"name": "x"}},
            errors.BadRequest,
            "Object 'Kind' is missing in the object",
        ),
        (
            {"apiVersion": "apps/v1", "kind": "Pod", "metadata": {"name": "x"}},
            errors.BadRequest,
            'no matches for kind "Pod" in version "apps/v1"',
        ),
        (
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "resourceVersion": "3"}},
            errors.BadRequest,
            "resourceVersion should not be set on objects to be created",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "big"},
                "data": {"x": "y" * (1600 * 1024)},
            },
            errors.RequestEntityTooLarge,
            "etcdserver: request is too large",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "huge"},
                "data": {"x": "y" * (2100 * 1024)},
            },
            errors.RequestEntityTooLarge,
            "received message larger than max",
        ),
    ],
)
def test_bad_objects_write_nothing(
    store: ObjectStore, obj: dict[str, Any], error: type[errors.StatusError], message: str
) -> None:
    with pytest.raises(error) as caught:
        store.create(obj)
    assert message in caught.value.message
    assert keys_under(store) == 0


def test_updates_that_change_identity_are_refused(store: ObjectStore) -> None:
    created = store.create(pod("id", namespace="a"))
    moved = store.get("pods", "id", namespace="a")
    moved.metadata.uid = "someone-else"
    with pytest.raises(errors.Invalid) as invalid:
        store.update(moved)
    assert invalid.value.message == (
        'Pod "id" is invalid: metadata.uid: Invalid value: "someone-else": field is immutable'
    )

    def rename(current: Any) -> Any:
        current.metadata.name = "other"
        return current

    with pytest.raises(errors.BadRequest) as bad:
        store.guaranteed_update("pods", "id", rename, namespace="a")
    assert (
        bad.value.message
        == "the name of the object (other) does not match the name on the URL (id)"
    )

    def to_service(current: Any) -> Any:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "id"}}

    with pytest.raises(errors.BadRequest) as bad:
        store.guaranteed_update("pods", "id", to_service, namespace="a")
    assert (
        bad.value.message == "the kind in the data (Service) does not match the expected kind (Pod)"
    )
    assert store.get("pods", "id", namespace="a").metadata.resource_version == (
        created.metadata.resource_version
    )
    doomed = store.get("pods", "id", namespace="a")
    doomed.metadata.deletion_timestamp = NOW
    with pytest.raises(errors.Invalid) as invalid:
        store.update(doomed)
    assert invalid.value.message.startswith(
        'Pod "id" is invalid: metadata.deletionTimestamp: Invalid value: '
        '"2024-05-01T12:00:00.123456Z"'
    )
    with pytest.raises(errors.NotFound):
        store.update(pod("missing"))


def test_invalid_json_in_the_store_is_an_internal_error(store: ObjectStore) -> None:
    store.client.put(f"{store.root}/pods/default/bad".encode(), b"{not json")
    with pytest.raises(errors.InternalError) as caught:
        store.get("pods", "bad")
    assert caught.value.code == 500
    assert "/pods/default/bad" in caught.value.message
    with pytest.raises(errors.InternalError):
        store.list("pods")


def test_objects_that_do_not_fit_their_model(store: ObjectStore) -> None:
    misshapen = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "odd", "namespace": "default"},
        "spec": {"containers": "x"},
    }
    store.client.put(f"{store.root}/pods/default/odd".encode(), json.dumps(misshapen).encode())
    with pytest.raises(errors.InternalError) as caught:
        store.get("pods", "odd")
    assert caught.value.message.startswith("unable to convert Pod 'default/odd' to V1Pod")
    plain = ObjectStore(store.client, root=store.root, typed=False).get("pods", "odd")
    assert plain["spec"] == {"containers": "x"}


def test_kinds_of_stored_crds_resolve(store: ObjectStore) -> None:
    store.create(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{store.root.split('/')[1]}.example.com"},
            "spec": {
                "group": f"{store.root.split('/')[1]}.example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": True, "storage": True}],
            },
        }
    )
    group = f"{store.root.split('/')[1]}.example.com"
    resource = store.resolve(f"widgets.{group}")
    assert (resource.kind, resource.etcd_prefix) == ("Widget", f"{group}/widgets")
    store.create(
        {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "size": 3}
    )
    assert json.loads(stored(store, f"{group}/widgets/default/w"))["size"] == 3
    got = store.get(f"widgets.{group}", "w")  # no model for a custom kind: a dict
    assert got["size"] == 3 and got["kind"] == "Widget"
    assert got["metadata"]["resourceVersion"].isdigit()


def test_guaranteed_update_preconditions_and_namespace_moves(store: ObjectStore) -> None:
    created = store.create(pod("pre", namespace="a"))

    def touch(current: Any) -> Any:
        current.metadata.labels = {"t": "1"}
        return current

    stale = Preconditions(resource_version="1")
    with pytest.raises(errors.Conflict) as caught:
        store.guaranteed_update("pods", "pre", touch, namespace="a", preconditions=stale)
    assert caught.value.message.endswith(
        "Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object "
        f"meta: {created.metadata.resource_version}"
    )

    def move(current: Any) -> Any:
        current.metadata.namespace = "b"
        return current

    with pytest.raises(errors.BadRequest) as bad:
        store.guaranteed_update("pods", "pre", move, namespace="a")
    assert bad.value.message == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )
    fresh = Preconditions(uid="uid-0", resource_version=created.metadata.resource_version)
    updated = store.guaranteed_update("pods", "pre", touch, namespace="a", preconditions=fresh)
    assert updated.metadata.labels == {"t": "1"}
    assert store.guaranteed_update("pods", "pre", lambda current: None, namespace="a") == updated
