"""The object store with encryption at rest, on etcdpy and etcd 3.4: Secrets written through
``transformers=`` are encrypted in etcd (the prefix is there, the plaintext is not), read back
whole, refused by a store without the key, and objects stored in the clear before encryption was
turned on become encrypted with reencrypt, readable all along.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from kubernetes.client import V1ConfigMap, V1ObjectMeta, V1Secret

from etcdpy.k8s import errors
from etcdpy.k8s.encryption import EncryptionConfig
from etcdpy.k8s.reencrypt import reencrypt
from etcdpy.k8s.store import ObjectStore
from tests.k8s.conftest import Server

KEY = base64.b64encode(bytes(range(32))).decode()
PASSWORD = "correct-horse-battery-staple"


def config(*providers: dict[str, object]) -> EncryptionConfig:
    return EncryptionConfig.from_document(
        {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["secrets"], "providers": list(providers)}],
        }
    )


AESGCM: dict[str, object] = {"aesgcm": {"keys": [{"name": "key1", "secret": KEY}]}}
IDENTITY: dict[str, object] = {"identity": {}}


def secret(name: str) -> V1Secret:
    data: dict[str, bytes | str] = {"password": base64.b64encode(PASSWORD.encode()).decode()}
    return V1Secret(metadata=V1ObjectMeta(name=name, namespace="default"), data=data)


@pytest.fixture
def plain_store(server: Server) -> Iterator[ObjectStore]:
    store = ObjectStore.connect(server.endpoint, root=server.root)
    try:
        yield store
    finally:
        store.close()


def raw(store: ObjectStore, key: bytes) -> bytes:
    [kv] = store.client.range(key).kvs
    return bytes(kv.value)


def test_secrets_are_encrypted_in_etcd_and_read_back(server: Server) -> None:
    encrypted = ObjectStore.connect(
        server.endpoint, root=server.root, transformers=config(AESGCM, IDENTITY)
    )
    try:
        created = encrypted.create(secret("db"))
        encrypted.create(V1ConfigMap(metadata=V1ObjectMeta(name="cm"), data={"pw": PASSWORD}))
        key = f"{server.root}/secrets/default/db".encode()
        value = raw(encrypted, key)
        assert value.startswith(b"k8s:enc:aesgcm:v1:key1:")
        encoded = base64.b64encode(PASSWORD.encode())
        assert encoded not in value and b"Secret" not in value
        # The configuration covers secrets only: the ConfigMap is stored as JSON.
        assert raw(encrypted, f"{server.root}/configmaps/default/cm".encode()).startswith(b"{")

        got = encrypted.get("secrets", "db", namespace="default")
        assert got.data == {"password": encoded.decode()}
        assert got.metadata.uid == created.metadata.uid
        listed = encrypted.list("secrets", namespace="default")
        assert [s.metadata.name for s in listed.items] == ["db"]

        # The same bytes in another key do not open (AES-GCM authenticates the etcd key).
        moved = f"{server.root}/secrets/default/moved".encode()
        encrypted.client.put(moved, value)
        with pytest.raises(errors.InternalError, match="/secrets/default/moved"):
            encrypted.get("secrets", "moved", namespace="default")
    finally:
        encrypted.close()


def test_a_store_without_the_key_cannot_read_encrypted_secrets(
    server: Server, plain_store: ObjectStore
) -> None:
    encrypted = ObjectStore.connect(server.endpoint, root=server.root, transformers=config(AESGCM))
    try:
        encrypted.create(secret("locked"))
    finally:
        encrypted.close()
    other_key: dict[str, object] = {"aesgcm": {"keys": [{"name": "key2", "secret": KEY}]}}
    wrong = ObjectStore.connect(server.endpoint, root=server.root, transformers=config(other_key))
    try:
        with pytest.raises(errors.InternalError) as caught:
            wrong.get("secrets", "locked", namespace="default")
        assert "no matching key was found for the provided AES transformer" in caught.value.message
    finally:
        wrong.close()
    with pytest.raises(errors.StatusError):
        plain_store.get("secrets", "locked", namespace="default")


def test_turning_encryption_on_then_reencrypting(server: Server, plain_store: ObjectStore) -> None:
    for i in range(4):
        plain_store.create(secret(f"old{i}"))
    keys = [f"{server.root}/secrets/default/old{i}".encode() for i in range(4)]
    assert all(raw(plain_store, key).startswith(b"{") for key in keys)

    on = config(AESGCM, IDENTITY)
    encrypted = ObjectStore.connect(server.endpoint, root=server.root, transformers=on)
    try:
        # Readable before the rewrite (identity reads them), and after it.
        before = {s.metadata.name: s.data for s in encrypted.list("secrets").items}
        report = reencrypt(encrypted.client, on, root=server.root, resources=["secrets"])
        assert report.lines() == ["secrets: rewritten 4, unchanged 0, failed 0"]
        assert all(raw(plain_store, key).startswith(b"k8s:enc:aesgcm:v1:key1:") for key in keys)
        after = {s.metadata.name: s.data for s in encrypted.list("secrets").items}
        assert after == before and len(after) == 4
    finally:
        encrypted.close()
