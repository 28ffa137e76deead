from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.testing.processes import FRONTEND_PROCESSES_ENV, MemberProcess, etcdpy_member
from tests.external_tools import Etcdctl

# The parameter id of a test's run against real etcd 3.4 (the reference beside etcdpy).
REFERENCE_ID = "etcd"
# The marker of a test the second pass does not repeat (see pytest_collection_modifyitems).
FIRST_PASS_ONLY = "first_pass_only"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The suite's second pass (front-end processes, ETCD_FRONTEND_PROCESSES=2) repeats only
    what front-ends could change. Deselected there (not skipped; the first pass ran them):

    - a run against real etcd 3.4 (parameter id ``etcd``): it does not depend on etcdpy's
      front-ends;
    - a test marked ``first_pass_only("why")``, the reason required: its subject is the core's
      own behaviour (Raft, the peer transport, the WAL, the lessor) that no front-end takes part
      in, or it starts no etcdpy member at all (etcdpyctl against real etcd 3.4).
    """
    for item in items:
        marker = item.get_closest_marker(FIRST_PASS_ONLY)
        if marker is not None and not (marker.args and str(marker.args[0]).strip()):
            raise pytest.UsageError(
                f"{item.nodeid}: {FIRST_PASS_ONLY} needs its reason as argument"
            )
    if os.environ.get(FRONTEND_PROCESSES_ENV, "1") == "1":
        return
    repeated = [item for item in items if not _first_pass_only(item)]
    if len(repeated) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if _first_pass_only(item)])
        items[:] = repeated


def _first_pass_only(item: pytest.Item) -> bool:
    return REFERENCE_ID in _param_ids(item) or item.get_closest_marker(FIRST_PASS_ONLY) is not None


def _param_ids(item: pytest.Item) -> list[str]:
    callspec = getattr(item, "callspec", None)
    return callspec.id.split("-") if callspec is not None else []


@pytest.fixture
def own_etcdpy_server(tmp_path: Path) -> Iterator[MemberProcess]:
    """A member of the test's own: a fresh store (revision 1), free to be stopped."""
    member = etcdpy_member(tmp_path)
    member.start()
    try:
        yield member
    finally:
        member.stop()


@pytest.fixture
def etcdpy_server(own_etcdpy_server: MemberProcess) -> MemberProcess:
    """The member a test talks to: its own, unless its module shares one (a module that
    defines ``etcdpy_server`` on ``module_etcdpy_server``)."""
    return own_etcdpy_server


@pytest.fixture
def etcdctl(etcdpy_server: MemberProcess) -> Etcdctl:
    return Etcdctl(etcdpy_server.endpoint)


@pytest.fixture(scope="module")
def module_etcdpy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemberProcess]:
    """One member for every test of a module whose tests need only an empty keyspace and no
    lease: a start costs about 1 s, 3 s with two front-end processes. A module uses it by
    defining its own ``etcdpy_server`` fixture that returns
    ``tests.integration.shared_member.wiped(module_etcdpy_server)``."""
    member = etcdpy_member(tmp_path_factory.mktemp("shared-member"))
    member.start()
    try:
        yield member
    finally:
        member.stop()
