"""Fixtures: a ``LocalKube`` per module (its network, namespaces and pods removed at the end,
also on failure), after checking the tools it needs are there."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.external_tools import missing
from tests.k8s_harness.cluster import LocalKube
from tests.k8s_harness.manifests import helm_binary

TOOLS = ("ip", "unshare", "mount", "curl", "etcdctl")


def require_harness_tools() -> None:
    if os.geteuid() != 0:
        missing("the k8s harness needs root (network and mount namespaces)")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed")


def require_helm() -> None:
    if helm_binary() is None:
        missing("helm is not installed")


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKube]:
    require_harness_tools()
    workdir: Path = tmp_path_factory.mktemp("kube")
    workdir.chmod(0o755)
    with LocalKube(workdir) as local:
        yield local
