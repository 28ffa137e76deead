"""etcd's command line, environment variables and config file, turned into a ServerConfig.

Sources, as in etcd: command-line flags, then ``ETCD_<FLAG_NAME>`` environment variables for
flags not given on the command line. A variable for a flag also given on the command line is
a fatal conflict; an ``ETCD_`` variable matching no flag is a warning. With ``--config-file``
(or ``ETCD_CONFIG_FILE``) the YAML file is the only source: other flags and variables are
ignored, as etcd does. The flags themselves are in ``flag_table``.

Exit codes: 2 for a malformed command line or a feature not built yet, 1 for a configuration
etcd would refuse too (its messages, see ``etcdpy.config``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from etcdpy.cli import goflag
from etcdpy.cli.config_file import load_config_file
from etcdpy.cli.flag_table import (
    BY_NAME,
    ENV_PREFIX,
    FLAGS,
    HIDDEN,
    SPECS,
    FlagDef,
    NotBuiltYet,
    env_name,
)
from etcdpy.cli.goflag import FlagError
from etcdpy.cli.help import help_text, version_text
from etcdpy.config import ConfigError, ServerConfig, go_quote, parse_initial_cluster

__all__ = [
    "BY_NAME",
    "ENV_PREFIX",
    "EXIT_CONFIG",
    "EXIT_USAGE",
    "FLAGS",
    "HIDDEN",
    "FlagDef",
    "FlagError",
    "NotBuiltYet",
    "ParseOutcome",
    "env_name",
    "help_text",
    "parse_server_args",
    "version_text",
]

EXIT_USAGE = 2
EXIT_CONFIG = 1


# -- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    """What the command line asks for; ``config`` is set when ``action`` is ``run``."""

    action: Literal["run", "help", "version"]
    config: ServerConfig | None = None
    warnings: tuple[str, ...] = ()
    config_file: str = ""
    # Where each setting came from: "flag", "env" or "file".
    sources: Mapping[str, str] = field(default_factory=dict)


def parse_server_args(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> ParseOutcome:
    """Turn etcd-style arguments and environment into a ``ParseOutcome``.

    Raises ``FlagError`` or ``NotBuiltYet`` (exit code 2) and ``ConfigError`` (exit code 1;
    ``UnsupportedError``, a ``ConfigError``, means 2).
    """
    env = os.environ if environ is None else environ
    try:
        parsed = goflag.parse_go_args(argv, SPECS)
    except goflag.HelpRequested:
        return ParseOutcome("help")
    if parsed.rest:
        stray = parsed.rest[0]
        message = f"'{stray}' is not a valid flag"
        if stray in ("true", "false"):
            message += " (give a boolean flag its value with '=', as in --pre-vote=false)"
        raise FlagError(message)
    cli = dict(parsed.values)  # a flag given twice: the last one wins, as in Go
    warnings = [
        f'flag "-{name}" is no longer supported - ignoring.'
        for name in cli
        if BY_NAME[name].ignored
    ]
    if cli.get("version"):
        return ParseOutcome("version", warnings=tuple(warnings))

    config_file = str(cli.get("config-file") or env.get(env_name("config-file"), ""))
    if config_file:
        values = load_config_file(config_file, warnings)
        sources = dict.fromkeys(values, "file")
        warnings.append(
            f"loaded server configuration from {go_quote(config_file)}; other command line "
            "flags and environment variables are ignored"
        )
    else:
        env_values = _values_from_env(env, set(cli), warnings)
        sources = {**dict.fromkeys(env_values, "env"), **dict.fromkeys(cli, "flag")}
        values = {**env_values, **cli}
    _refuse_not_built(values, sources)
    config = _build_config(values, warnings, from_command_line=not config_file)
    return ParseOutcome("run", config, tuple(warnings), config_file, sources)


def _values_from_env(
    env: Mapping[str, str], set_on_cli: set[str], warnings: list[str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    used: set[str] = set()
    for d in FLAGS:
        key = env_name(d.name)
        if key not in env:
            continue
        if d.name in set_on_cli:
            raise ConfigError(
                f"conflicting environment variable {go_quote(key)} is shadowed by "
                "corresponding command-line flag (either unset environment variable or "
                "disable flag)"
            )
        text = env[key]
        if text == "":
            continue  # etcd skips empty variables
        used.add(key)
        try:
            values[d.name] = d.parse(text)
        except ValueError as err:
            raise ConfigError(f"invalid value {go_quote(text)} for {key}: {err}") from None
        if d.ignored:
            warnings.append(f'flag "-{d.name}" is no longer supported - ignoring.')
    for key in sorted(env):
        unused = key.startswith(ENV_PREFIX + "_") and key not in used and env[key] != ""
        if unused and _flag_of_env(key) is None:
            warnings.append(f"unrecognized environment variable {key}={env[key]}")
    return values


def _flag_of_env(key: str) -> FlagDef | None:
    name = key[len(ENV_PREFIX) + 1 :].lower().replace("_", "-")
    return BY_NAME.get(name)


def _describe(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"--{name}={'true' if value else 'false'}"
    if isinstance(value, tuple):
        return f"--{name}={','.join(str(v) for v in value)}"
    return f"--{name}={value}"


def _refuse_not_built(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    for name in sorted(values):
        d = BY_NAME[name]
        if d.feature is None or values[name] == d.default:
            continue
        origin = {
            "flag": "",
            "env": f" (from {env_name(name)})",
            "file": " (from the config file)",
        }[sources[name]]
        raise NotBuiltYet(
            f"{_describe(name, values[name])}{origin}: not built yet in etcdpy "
            f"({d.feature}); remove the setting or leave it at its default "
            f"'{d.shown_default()}'"
        )


def _build_config(
    values: Mapping[str, Any], warnings: list[str], *, from_command_line: bool
) -> ServerConfig:
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        d = BY_NAME[name]
        if d.field is not None:
            kwargs[d.field] = value
    if "initial-cluster" in values:
        kwargs["initial_cluster"] = parse_initial_cluster(values["initial-cluster"])
    # etcd drops its default advertise URL when the client listen URLs were chosen by hand,
    # so that a member never advertises an address it does not listen on.
    if (
        from_command_line
        and "listen-client-urls" in values
        and "advertise-client-urls" not in values
    ):
        kwargs["advertise_client_urls"] = ()
    if "log-output" in values:
        if "log-outputs" in values:
            raise ConfigError(
                "both '--log-output' and '--log-outputs' are set; only set '--log-outputs'"
            )
        warnings.append("'--log-output' flag has been deprecated! Please use '--log-outputs'!")
        kwargs["log_outputs"] = values["log-output"]
    if values.get("debug"):
        warnings.append("deprecated '--debug' flag is set; use '--log-level=debug' instead")
        kwargs["log_level"] = "debug"
    if values.get("log-package-levels"):
        warnings.append("'--log-package-levels' is ignored; use '--log-level'")
    return ServerConfig(**kwargs)
