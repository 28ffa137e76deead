"""etcd's YAML configuration file (``--config-file``), read into flag values.

The keys are etcd's flag names (``data-dir``, ``initial-cluster`` ...), with the TLS settings
nested under ``client-transport-security`` and ``peer-transport-security`` as in etcd.
"""

from __future__ import annotations

import json
from typing import Any

from etcdpy.cli.flag_table import BY_NAME, FlagDef
from etcdpy.cli.goflag import parse_bool, parse_go_duration
from etcdpy.config import ConfigError, go_quote

__all__ = ["load_config_file"]

# The file nests the TLS settings; each key maps to a flag.
_TLS_SECTIONS = {
    "client-transport-security": "",
    "peer-transport-security": "peer-",
}


def load_config_file(path: str, warnings: list[str]) -> dict[str, Any]:
    """{flag name: parsed value} for the keys of the file; odd keys add a warning."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - PyYAML comes with kubernetes
        raise ConfigError("--config-file needs PyYAML, which is not installed") from None
    try:
        with open(path, encoding="utf-8") as fh:
            document = yaml.safe_load(fh)
    except OSError as err:
        raise ConfigError(f"open {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"error parsing {path}: {err}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"error parsing {path}: the top level must be a mapping")
    flat: dict[str, Any] = {}
    for key, value in document.items():
        key = str(key)
        if key in _TLS_SECTIONS and isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[_TLS_SECTIONS[key] + str(sub)] = subvalue
        else:
            flat[key] = value
    values: dict[str, Any] = {}
    for key, raw in flat.items():
        d = BY_NAME.get(key)
        if d is None or d.name in ("config-file", "version"):
            # etcd ignores unknown keys silently; a warning costs nothing and helps.
            warnings.append(f"unknown key {go_quote(key)} in config file {path} (ignored)")
            continue
        if raw is None:
            continue
        try:
            values[key] = _file_value(d, raw)
        except ValueError as err:
            raise ConfigError(
                f"invalid value {json.dumps(raw)} for {key} in {path}: {err}"
            ) from None
    return values


def _file_value(d: FlagDef, raw: Any) -> Any:
    # etcd reads the file as JSON into Go types: durations are integers of nanoseconds,
    # lists may be YAML lists. We accept those and the flag's own text form.
    if d.parse is parse_go_duration and isinstance(raw, int) and not isinstance(raw, bool):
        return raw / 1e9
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, list):
        text = ",".join(str(item) for item in raw)
    else:
        text = str(raw)
    if d.is_bool and not isinstance(raw, bool):
        return parse_bool(text)
    return d.parse(text)
