"""The one log line a member writes at start with its whole configuration (as etcd's
"starting an etcd server"), so an operator can see every effective setting in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return str(value)


def config_fields(config: Any) -> dict[str, Any]:
    """Every field of a dataclass configuration, as JSON-friendly values (URLs as strings)."""
    if not dataclasses.is_dataclass(config):
        return {}
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
