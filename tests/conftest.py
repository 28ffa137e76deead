"""Suite-wide settings: hypothesis never fails a test for being slow (CI machines are noisy;
timings never decide pass or fail), and it derandomizes in CI so a run replays exactly."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "etcdpy",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CI", "").lower() == "true",
)
settings.load_profile("etcdpy")
