from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.testing.processes import FRONTEND_PROCESSES_ENV, MemberProcess, etcdpy_member
from tests.external_tools import Etcdctl

# The parameter id of a test's run against real etcd 3.4 (the reference beside etcdpy).
REFERENCE_ID = "etcd"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The suite's second pass (front-end processes, ETCD_FRONTEND_PROCESSES=2) repeats
    etcdpy's runs only: a run against real etcd 3.4 (parameter id ``etcd``) does not depend on
    etcdpy's front-ends, and the first pass ran it already. Deselected, not skipped."""
    if os.environ.get(FRONTEND_PROCESSES_ENV, "1") == "1":
        return
    reference = [item for item in items if REFERENCE_ID in _param_ids(item)]
    if reference:
        config.hook.pytest_deselected(items=reference)
        items[:] = [item for item in items if REFERENCE_ID not in _param_ids(item)]


def _param_ids(item: pytest.Item) -> list[str]:
    callspec = getattr(item, "callspec", None)
    return callspec.id.split("-") if callspec is not None else []


@pytest.fixture
def etcdpy_server(tmp_path: Path) -> Iterator[MemberProcess]:
    member = etcdpy_member(tmp_path)
    member.start()
    try:
        yield member
    finally:
        member.stop()


@pytest.fixture
def etcdctl(etcdpy_server: MemberProcess) -> Etcdctl:
    return Etcdctl(etcdpy_server.endpoint)
