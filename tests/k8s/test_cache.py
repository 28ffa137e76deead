"""The thread-safe indexed store (client-go's thread_safe_store.go, index.go)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes.client import V1ObjectMeta, V1Pod

from etcdpy.k8s.cache import (
    DeletedFinalStateUnknown,
    Indexer,
    UnknownIndex,
    label_index,
    namespace_index,
    object_key,
)


def pod(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }


def test_keys_are_client_go_namespace_slash_name() -> None:
    indexer = Indexer()
    indexer.put(pod("a", "ns1"))
    indexer.put({"kind": "Node", "metadata": {"name": "n1"}})
    indexer.put(V1Pod(metadata=V1ObjectMeta(name="m", namespace="ns2")))
    assert sorted(indexer.list_keys()) == ["n1", "ns1/a", "ns2/m"]
    stored = indexer.get_by_key("ns2/m")
    assert stored is not None and stored.metadata.name == "m"
    assert object_key(DeletedFinalStateUnknown("ns/x", pod("x"))) == "ns/x"


def test_indexes_follow_updates_and_deletes() -> None:
    indexer = Indexer({"namespace": namespace_index, "app": label_index("app")})
    indexer.put(pod("a", "ns1", app="web"))
    indexer.put(pod("b", "ns1", app="db"))
    indexer.put(pod("c", "ns2", app="web"))
    assert [o["metadata"]["name"] for o in indexer.by_index("app", "web")] == ["a", "c"]
    assert [o["metadata"]["name"] for o in indexer.by_index("namespace", "ns1")] == ["a", "b"]
    old = indexer.put(pod("a", "ns1", app="db"))  # relabelled
    assert old is not None and old["metadata"]["labels"] == {"app": "web"}
    assert indexer.index_keys("app", "web") == ["ns2/c"]
    assert indexer.index_keys("app", "db") == ["ns1/a", "ns1/b"]
    indexer.delete("ns2/c")
    assert indexer.by_index("app", "web") == []
    assert indexer.list_index_values("app") == ["db"]  # no empty value left behind
    indexer.put(pod("nolabel", "ns1"))
    assert indexer.list_index_values("app") == ["db"]
    with pytest.raises(UnknownIndex):
        indexer.by_index("nope", "x")


def test_replace_rebuilds_everything_and_added_indexers_cover_stored_objects() -> None:
    indexer = Indexer({"namespace": namespace_index})
    indexer.put(pod("old", "ns1"))
    indexer.replace([pod("x", "ns3", tier="a"), pod("y", "ns3", tier="b")])
    assert indexer.list_keys() == ["ns3/x", "ns3/y"]
    assert indexer.by_index("namespace", "ns1") == []
    indexer.add_indexers({"tier": label_index("tier")})
    assert indexer.index_keys("tier", "b") == ["ns3/y"]
    with pytest.raises(ValueError, match="conflict"):
        indexer.add_indexers({"tier": label_index("tier")})


def test_an_index_function_that_raises_changes_nothing() -> None:
    def bad(obj: Any) -> list[str]:
        if obj["metadata"]["name"] == "bad":
            raise RuntimeError("boom")
        return ["ok"]

    indexer = Indexer({"bad": bad})
    indexer.put(pod("good"))
    with pytest.raises(RuntimeError):
        indexer.put(pod("bad"))
    assert indexer.list_keys() == ["default/good"]
    assert indexer.index_keys("bad", "ok") == ["default/good"]


def test_concurrent_writers_and_readers_keep_indexes_consistent() -> None:
    indexer = Indexer({"app": label_index("app")})

    def writer(n: int) -> None:
        for i in range(200):
            indexer.put(pod(f"p{i % 20}", app=f"a{(i + n) % 3}"))
            if i % 7 == 0:
                indexer.delete(f"default/p{(i + n) % 20}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        indexer.by_index("app", "a1")
    for thread in threads:
        thread.join()
    values = indexer.list_index_values("app")
    indexed = sorted(key for value in values for key in indexer.index_keys("app", value))
    assert indexed == sorted(indexer.list_keys())
