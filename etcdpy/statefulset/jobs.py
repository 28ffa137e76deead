"""The Jobs' commands: scale-in, snapshot, defrag, check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from etcdpy.statefulset.settings import Settings

JOBS: dict[str, Callable[[Settings, Any], int]] = {}
