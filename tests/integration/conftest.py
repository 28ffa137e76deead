from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.testing.processes import MemberProcess, etcdpy_member
from tests.external_tools import Etcdctl


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
