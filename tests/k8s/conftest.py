"""Servers for the object layer's tests: one etcdpy member and one real etcd 3.4 for the whole
session (the object layer must behave the same on both), each test under its own root so that
tests sharing a server never see each other's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member
from tests.external_tools import require_tool


@dataclass(frozen=True)
class Server:
    """A running member the test may use: ``kind`` is "etcdpy" or "etcd"; ``root`` is the
    test's own storage root (give it to the store as ``root=``)."""

    kind: str
    endpoint: str
    root: str
    member: MemberProcess


@pytest.fixture(scope="session")
def _members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MemberProcess]]:
    tmp: Path = tmp_path_factory.mktemp("k8s-members")
    started: dict[str, MemberProcess] = {}
    try:
        started["etcdpy"] = etcdpy_member(tmp, "k8s-etcdpy")
        started["etcdpy"].start()
        require_tool("etcd")
        started["etcd"] = etcd_member(tmp, "k8s-etcd")
        started["etcd"].start()
        yield started
    finally:
        for member in started.values():
            member.stop()


@pytest.fixture(params=["etcdpy", "etcd"])
def server(request: pytest.FixtureRequest, _members: dict[str, MemberProcess]) -> Server:
    """Each test that takes it runs twice: against etcdpy and against real etcd 3.4."""
    member = _members[request.param]
    root = f"/t-{uuid.uuid4().hex[:12]}/registry"
    return Server(request.param, member.endpoint, root, member)


@pytest.fixture
def etcdpy_server(_members: dict[str, MemberProcess]) -> Server:
    """The etcdpy member only (for what only it can show, e.g. its metrics)."""
    member = _members["etcdpy"]
    return Server("etcdpy", member.endpoint, f"/t-{uuid.uuid4().hex[:12]}/registry", member)
