"""Stored values: JSON as the API server writes it, protobuf values it wrote read back through
the store (the envelope built here with the generated classes), and bytes that are neither."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from etcdpy.k8s import errors
from etcdpy.k8s.codec import PROTOBUF_MAGIC, PROTOBUF_RAW, Codec, decode_plain, go_json
from etcdpy.k8s.store import ObjectStore
from etcdpy.pb.k8s import runtime_pb2
from tests.k8s.conftest import Server
from tests.k8s.store_support import make_store, pod, stored


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    with make_store(server) as store:
        yield store


def test_go_json_orders_type_and_object_meta_as_go_does() -> None:
    obj = {
        "spec": {"b": 1, "a": "<&>\u2028"},
        "metadata": {"labels": {"k": "v"}, "uid": "u", "name": "n", "namespace": "ns"},
        "apiVersion": "v1",
        "kind": "Pod",
        "status": {},
        "extra": "é",
    }
    assert go_json(obj) == (
        b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"n","namespace":"ns","uid":"u",'
        b'"labels":{"k":"v"}},"spec":{"b":1,"a":"\\u003c\\u0026\\u003e\\u2028"},"status":{},'
        b'"extra":"\xc3\xa9"}\n'
    )


def test_stored_json_has_no_resource_version_or_self_link(store: ObjectStore) -> None:
    store.create(pod("j"))
    value = json.loads(stored(store, "pods/default/j"))
    assert set(value) == {"kind", "apiVersion", "metadata", "spec"}
    assert "resourceVersion" not in value["metadata"] and "selfLink" not in value["metadata"]


def protobuf_value(name: str, namespace: str) -> bytes:
    meta = runtime_pb2.ObjectMeta(
        name=name,
        namespace=namespace,
        uid="7c1e-uid",
        generation=3,
        creationTimestamp=runtime_pb2.Time(seconds=1714564800),
        labels={"app": "web"},
        finalizers=["f"],
        ownerReferences=[
            runtime_pb2.OwnerReference(
                apiVersion="apps/v1", kind="ReplicaSet", name="rs", uid="o", controller=True
            )
        ],
    )
    # the object's field 2 (a PodSpec here) is bytes this codec does not read
    raw = runtime_pb2.ObjectWithMeta(metadata=meta).SerializeToString() + b"\x12\x03\x0a\x01x"
    envelope = runtime_pb2.Unknown(
        typeMeta=runtime_pb2.TypeMeta(apiVersion="v1", kind="Pod"),
        raw=raw,
        contentType="application/vnd.kubernetes.protobuf",
    )
    return PROTOBUF_MAGIC + envelope.SerializeToString()


def test_protobuf_values_of_an_api_server_are_read(store: ObjectStore) -> None:
    key = f"{store.root}/pods/ns/pb".encode()
    store.client.put(key, protobuf_value("pb", "ns"))
    got = store.get("pods", "pb", namespace="ns")
    assert got.kind == "Pod" and got.api_version == "v1"
    assert got.metadata.name == "pb" and got.metadata.uid == "7c1e-uid"
    assert got.metadata.labels == {"app": "web"} and got.metadata.generation == 3
    assert got.metadata.creation_timestamp.isoformat() == "2024-05-01T12:00:00+00:00"
    assert got.metadata.owner_references[0].controller is True
    assert got.metadata.resource_version == str(store.client.range(key).kvs[0].mod_revision)
    listed = store.list("pods", namespace="ns", label_selector="app=web")
    assert [p.metadata.name for p in listed.items] == ["pb"]
    plain = ObjectStore(store.client, root=store.root, typed=False).get(
        "pods", "pb", namespace="ns"
    )
    assert plain[PROTOBUF_RAW]  # the object's raw protobuf, kept
    with pytest.raises(errors.BadRequest):  # never rewritten as JSON with its spec lost
        ObjectStore(store.client, root=store.root, typed=False).update(plain)
    assert store.client.range(key).kvs[0].value.startswith(PROTOBUF_MAGIC)


@pytest.mark.parametrize(
    "value",
    [b"\x00\x01\x02", b"k8s\x00\xff\xff\xff", b"[1,2]", b"", b"k8s"],
)
def test_other_bytes_are_internal_errors_naming_the_key(value: bytes) -> None:
    with pytest.raises(errors.InternalError) as caught:
        decode_plain(value, b"/registry/pods/ns/x")
    assert "/registry/pods/ns/x" in caught.value.message


class Reversing:
    """A value transformer (as encryption at rest plugs in): reversed bytes, keyed."""

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        return etcd_key + b"|" + plain[::-1]

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        prefix = etcd_key + b"|"
        if not stored.startswith(prefix):
            raise ValueError("not ours")
        return stored[len(prefix) :][::-1], False


class SecretsOnly:
    def for_resource(self, group_resource: str) -> Reversing | None:
        return Reversing() if group_resource == "secrets" else None


def test_transformers_wrap_the_json_of_their_resources(store: ObjectStore) -> None:
    with ObjectStore(store.client, root=store.root, transformers=SecretsOnly()) as secret_store:
        secret_store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
        secret_store.create(pod("plain"))
        raw = stored(store, "secrets/default/s")
        assert raw.startswith(f"{store.root}/secrets/default/s|".encode())
        assert secret_store.get("secrets", "s").metadata.name == "s"
        assert stored(store, "pods/default/plain").startswith(b'{"kind":"Pod"')
        store.client.put(f"{store.root}/secrets/default/other".encode(), b'{"kind":"Secret"}')
        with pytest.raises(errors.InternalError) as caught:
            secret_store.get("secrets", "other")
        assert "secrets/default/other" in caught.value.message


def test_codec_round_trip_sets_the_resource_version() -> None:
    codec = Codec()
    value = codec.encode(
        {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x", "resourceVersion": "9"}},
        "pods",
        b"k",
    )
    obj, stale = codec.decode(value, "pods", b"k", 42)
    assert obj["metadata"] == {"name": "x", "resourceVersion": "42"} and stale is False
