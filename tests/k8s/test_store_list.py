"""Lists as the API server's GetList makes them, on etcdpy and etcd 3.4: selectors, pages with
continue tokens and remainingItemCount, resourceVersion and resourceVersionMatch, compaction."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from etcdpy.k8s import continue_token, errors
from etcdpy.k8s.store import ObjectStore
from etcdpy.pb.etcdserverpb import rpc_pb2
from tests.k8s.conftest import Server
from tests.k8s.store_support import make_store, pod


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    with make_store(server) as store:
        yield store


def names(items: list[Any]) -> list[str]:
    return [item.metadata.name for item in items]


def fill(store: ObjectStore, count: int, namespace: str = "default") -> list[Any]:
    return [
        store.create(
            pod(
                f"p{i:02}",
                labels={"n": str(i), "even": str(i % 2 == 0).lower()},
                namespace=namespace,
            )
        )
        for i in range(count)
    ]


def compact(store: ObjectStore) -> int:
    revision = int(store.client.range(b"/").header.revision)
    store.client.execute(rpc_pb2.CompactionRequest(revision=revision, physical=True))
    return revision


def test_list_all_namespaces_and_one(store: ObjectStore) -> None:
    fill(store, 2, "a")
    fill(store, 1, "b")
    everything = store.list("pods")
    assert names(everything.items) == ["p00", "p01", "p00"]
    assert names(store.list("pods", namespace="b").items) == ["p00"]
    assert everything.continue_ == ""
    assert everything.remaining_item_count is None
    assert int(everything.resource_version) == int(store.client.range(b"/").header.revision)


def test_pages_carry_continue_tokens_and_remaining_counts(store: ObjectStore) -> None:
    fill(store, 5)
    first = store.list("pods", limit=2)
    assert names(first.items) == ["p00", "p01"]
    assert first.remaining_item_count == 3
    token = json.loads(base64.urlsafe_b64decode(first.continue_ + "=="))
    assert token == {
        "v": "meta.k8s.io/v1",
        "rv": int(first.resource_version),
        "start": "default/p01\x00",
    }
    store.create(pod("p03a"))  # after the first page: not in this list's snapshot
    second = store.list("pods", limit=2, continue_=first.continue_)
    assert names(second.items) == ["p02", "p03"]
    assert second.resource_version == first.resource_version
    third = store.list("pods", limit=2, continue_=second.continue_)
    assert names(third.items) == ["p04"]
    assert third.continue_ == "" and third.remaining_item_count is None


def test_selectors_fill_the_page_by_reading_on(store: ObjectStore) -> None:
    fill(store, 9)
    page = store.list("pods", label_selector="even=true", limit=3)
    assert names(page.items) == ["p00", "p02", "p04"]
    assert page.remaining_item_count is None  # not counted under a selector
    rest = store.list("pods", label_selector="even=true", limit=3, continue_=page.continue_)
    assert names(rest.items) == ["p06", "p08"]
    assert names(store.list("pods", label_selector="n in (1,3),even!=true").items) == ["p01", "p03"]
    assert names(store.list("pods", field_selector="metadata.name=p05").items) == ["p05"]


def test_field_selectors_of_pods(store: ObjectStore) -> None:
    store.create(pod("on-a", node="a"))
    store.create(pod("on-b", node="b"))
    assert names(store.list("pods", field_selector="spec.nodeName=a").items) == ["on-a"]
    assert names(store.list("pods", field_selector="spec.nodeName!=a").items) == ["on-b"]
    with pytest.raises(errors.BadRequest) as caught:
        store.list("pods", field_selector="spec.image=x")
    assert caught.value.message == "field label not supported: spec.image"


def test_resource_version_matches(store: ObjectStore) -> None:
    created = fill(store, 3)
    at = created[1].metadata.resource_version
    store.delete("pods", "p00")
    exact = store.list("pods", resource_version=at, resource_version_match="Exact")
    assert names(exact.items) == ["p00", "p01"]
    assert exact.resource_version == at
    legacy_paged = store.list("pods", resource_version=at, limit=1)
    assert names(legacy_paged.items) == ["p00"] and legacy_paged.resource_version == at
    newer = store.list("pods", resource_version=at, resource_version_match="NotOlderThan")
    assert names(newer.items) == ["p01", "p02"]
    assert int(newer.resource_version) > int(at)
    with pytest.raises(errors.TooLargeResourceVersion) as caught:
        store.list("pods", resource_version="999999999", resource_version_match="NotOlderThan")
    assert caught.value.message.startswith(
        "Timeout: Too large resource version: 999999999, current: "
    )
    assert caught.value.code == 504
    with pytest.raises(errors.TooLargeResourceVersion):
        store.list("pods", resource_version="999999999", resource_version_match="Exact")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"resource_version": "abc"},
            errors.BadRequest,
            'invalid resource version: resourceVersion: Invalid value: "abc": '
            'strconv.ParseUint: parsing "abc": invalid syntax',
        ),
        (
            {"resource_version_match": "Exact"},
            errors.Invalid,
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ),
        (
            {"resource_version": "0", "resource_version_match": "Exact"},
            errors.Invalid,
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
            'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
        ),
        (
            {"label_selector": "a in b"},
            errors.BadRequest,
            "unable to parse requirement: found 'b' expected: '('",
        ),
        (
            {"continue_": "not-a-token"},
            errors.BadRequest,
            "invalid continue token: continue key is not valid: ",
        ),
    ],
)
def test_bad_list_options(
    store: ObjectStore, kwargs: dict[str, Any], error: type[errors.StatusError], message: str
) -> None:
    with pytest.raises(error) as caught:
        store.list("pods", **kwargs)
    assert caught.value.message.startswith(message)


def test_continue_with_a_resource_version_and_tampered_tokens(store: ObjectStore) -> None:
    fill(store, 3)
    first = store.list("pods", limit=1)
    with pytest.raises(errors.BadRequest) as caught:
        store.list("pods", limit=1, continue_=first.continue_, resource_version="5")
    assert caught.value.message == "specifying resource version is not allowed when using continue"
    prefix = f"{store.root}/pods/".encode()
    escape = continue_token.encode(prefix + b"../../other/x", prefix, 5)
    with pytest.raises(errors.BadRequest) as caught:
        store.list("pods", continue_=escape)
    assert (
        caught.value.message == "invalid continue token: continue key is not valid: ../../other/x"
    )
    wrong_version = base64.urlsafe_b64encode(b'{"v":"x","rv":1,"start":"a"}').decode().rstrip("=")
    with pytest.raises(errors.BadRequest) as caught:
        store.list("pods", continue_=wrong_version)
    assert caught.value.message == (
        "invalid continue token: continue key is not valid: server does not recognize this "
        "encoded version x"
    )


def test_compacted_lists_are_gone_and_continue_inconsistently(store: ObjectStore) -> None:
    created = fill(store, 3)
    first = store.list("pods", limit=1)
    store.delete("pods", "p02")
    compact(store)
    with pytest.raises(errors.Gone) as caught:
        store.list(
            "pods",
            resource_version=created[0].metadata.resource_version,
            resource_version_match="Exact",
        )
    assert caught.value.message == "The resourceVersion for the provided list is too old."
    assert caught.value.code == 410 and caught.value.reason == "Expired"
    with pytest.raises(errors.Gone) as caught:
        store.list("pods", limit=1, continue_=first.continue_)
    assert caught.value.message.startswith("The provided continue parameter is too old")
    rest = store.list("pods", continue_=caught.value.continue_)  # rv -1: the latest revision
    assert names(rest.items) == ["p01"]
    assert caught.value.status()["metadata"] == {"continue": caught.value.continue_}
