"""What the object store's tests share: a store on a test's server with a fixed clock and
predictable uids, and reading a key's bytes straight from etcd."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes.client import V1Container, V1ObjectMeta, V1Pod, V1PodSpec

from etcdpy.k8s.store import ObjectStore
from tests.k8s.conftest import Server

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_store(server: Server, **kwargs: Any) -> ObjectStore:
    uids = iter(f"uid-{i}" for i in range(100000))
    return ObjectStore.connect(
        server.endpoint, root=server.root, clock=lambda: NOW, new_uid=lambda: next(uids), **kwargs
    )


def stored(store: ObjectStore, key: str) -> bytes:
    """The value etcd holds at ``<root>/<key>``."""
    kvs = store.client.range(f"{store.root}/{key}".encode()).kvs
    assert len(kvs) == 1, key
    return bytes(kvs[0].value)


def pod(
    name: str,
    image: str = "busybox",
    labels: dict[str, str] | None = None,
    namespace: str | None = None,
    node: str | None = None,
) -> Any:
    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels=labels, namespace=namespace),
        spec=V1PodSpec(containers=[V1Container(name="c", image=image)], node_name=node),
    )
