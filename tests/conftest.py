"""Suite-wide settings: hypothesis never fails a test for being slow (CI machines are noisy;
timings never decide pass or fail), and it derandomizes in CI so a run replays exactly."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, settings

from etcdpy.observability.logging import shutdown_logging

settings.register_profile(
    "etcdpy",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CI", "").lower() == "true",
)
settings.load_profile("etcdpy")


@pytest.fixture(autouse=True)
def _logging_reset_after_each_test() -> Iterator[None]:
    """A test that runs a command's ``main`` in this process (``etcdpy k8s``, ``etcdpy``)
    configures logging onto the stderr pytest captured for that test, which is closed once the
    test ends: a later test's log line would raise "I/O operation on closed file"."""
    yield
    if structlog.is_configured():
        shutdown_logging()
