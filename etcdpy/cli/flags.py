"""etcd 3.4's server flags, environment variables and config file, turned into a ServerConfig.

Every flag etcd 3.4 accepts is known here, in one of three kinds:

- implemented: it sets a field of ``ServerConfig`` (or, for a few, decides one);
- accepted: any value is fine because it cannot change what etcdpy does (``--cors``: we serve
  no HTTP API on the client port; ``--logger=zap``: every logger is our structlog logger);
- not built yet (``feature`` is set): accepted at etcd's default, and any other value stops
  the server with exit code 2 and a message naming the flag and the missing feature.

Sources, as in etcd: command-line flags, then ``ETCD_<FLAG_NAME>`` environment variables for
flags not given on the command line. A variable for a flag also given on the command line is
a fatal conflict; an ``ETCD_`` variable matching no flag is a warning. With ``--config-file``
(or ``ETCD_CONFIG_FILE``) the YAML file is the only source: other flags and variables are
ignored, as etcd does.

Exit codes: 2 for a malformed command line or a feature not built yet, 1 for a configuration
etcd would refuse too (its messages, see ``etcdpy.config``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from etcdpy import ETCD_API_VERSION, __version__
from etcdpy.cli import goflag
from etcdpy.cli.goflag import FlagError, parse_bool, parse_go_duration, parse_int, parse_uint
from etcdpy.config import (
    URL,
    ConfigError,
    ServerConfig,
    UnsupportedError,
    go_quote,
    parse_initial_cluster,
    parse_urls,
)

__all__ = [
    "ENV_PREFIX",
    "FLAGS",
    "FlagDef",
    "FlagError",
    "NotBuiltYet",
    "ParseOutcome",
    "env_name",
    "help_text",
    "parse_server_args",
    "version_text",
]

ENV_PREFIX = "ETCD"
EXIT_USAGE = 2
EXIT_CONFIG = 1


class NotBuiltYet(Exception):
    """A flag asks for an etcd feature etcdpy does not have yet (exit code 2)."""


# -- value kinds ------------------------------------------------------------------------------


def _string(text: str) -> str:
    return text


def _urls(text: str) -> tuple[URL, ...]:
    if text == "":
        return ()
    try:
        return parse_urls(text)
    except UnsupportedError as err:
        # Not a malformed value: the user asks for something we lack; say so plainly.
        raise NotBuiltYet(str(err)) from None


def _strings(text: str) -> tuple[str, ...]:
    # etcd's unique-strings flags: comma-separated, duplicates dropped, sorted.
    return tuple(sorted({item for item in text.split(",") if item}))


def _choice(*valid: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in valid:
            raise ValueError("invalid value")
        return text

    return parse


def _ignored(text: str) -> bool:
    return True


_uint = parse_uint(64)
_uint32 = parse_uint(32)
_int = parse_int(64)


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlagDef:
    """One etcd flag: how to parse it, its default, and what etcdpy does with it."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    group: str
    field: str | None = None  # the ServerConfig field it sets
    is_bool: bool = False
    feature: str | None = None  # set when etcdpy lacks what the flag asks for
    default_text: str | None = None  # how --help shows the default
    ignored: bool = False  # etcd's own "no longer supported - ignoring" flags

    @property
    def kind(self) -> Literal["implemented", "accepted", "not-built", "ignored"]:
        if self.ignored:
            return "ignored"
        if self.feature is not None:
            return "not-built"
        if self.field is not None or self.name in _DECIDED_ELSEWHERE:
            return "implemented"
        return "accepted"

    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, tuple):
            return ",".join(str(v) for v in self.default)
        return str(self.default)


# Flags without a ServerConfig field of their own that still decide something.
_DECIDED_ELSEWHERE = frozenset({"config-file", "version", "debug", "log-output"})

MEMBER = "Member"
CLUSTERING = "Clustering"
SECURITY = "Security"
AUTH = "Auth"
MONITORING = "Profiling and Monitoring"
LOGGING = "Logging"
PROXY = "v2 Proxy (to be deprecated in v4)"
EXPERIMENTAL = "Experimental feature"
UNSAFE = "Unsafe feature"
DEPRECATED = "TO BE DEPRECATED"
HIDDEN = ""  # accepted like etcd, not listed in --help (etcd does not list them either)

_TLS = "TLS comes with the auth issue"
_PROXY = "no v2 proxy"
_DISCOVERY = "no discovery; use --initial-cluster"
_V2 = "no v2 API"
_CORRUPT = "no corruption checks"
_D = ServerConfig()


def _f(
    name: str,
    parse: Callable[[str], Any],
    default: Any,
    help: str,
    group: str,
    **kw: Any,
) -> FlagDef:
    return FlagDef(name, parse, default, help, group, is_bool=parse is parse_bool, **kw)


def _field(name: str, parse: Callable[[str], Any], help: str, group: str, **kw: Any) -> FlagDef:
    attr = name.replace("-", "_")
    return _f(name, parse, getattr(_D, attr), help, group, field=attr, **kw)


FLAGS: tuple[FlagDef, ...] = (
    _f(
        "config-file",
        _string,
        "",
        "YAML file with etcd's settings; when given, other flags and ETCD_* variables are ignored.",
        HIDDEN,
    ),
    _f("version", parse_bool, False, "Print the version and exit.", HIDDEN),
    # member
    _field("name", _string, "Name of this member, unique in the cluster.", MEMBER),
    _field(
        "data-dir", _string, "Directory of this member's data.", MEMBER, default_text="${name}.etcd"
    ),
    _field("wal-dir", _string, "Separate directory for the write-ahead log.", MEMBER),
    _field("snapshot-count", _uint, "Committed entries between two raft snapshots.", MEMBER),
    _field(
        "heartbeat-interval",
        _uint,
        "Leader heartbeat period in milliseconds (one raft tick).",
        MEMBER,
    ),
    _field(
        "election-timeout",
        _uint,
        "Milliseconds without a leader before a follower starts an election.",
        MEMBER,
    ),
    _field(
        "initial-election-tick-advance",
        parse_bool,
        "Fast-forward election ticks at start so that the first election comes sooner.",
        MEMBER,
    ),
    _field("listen-peer-urls", _urls, "URLs to listen on for raft traffic from peers.", MEMBER),
    _field("listen-client-urls", _urls, "URLs to listen on for gRPC clients.", MEMBER),
    _field("max-snapshots", _uint, "Snapshot files kept (0 keeps all).", MEMBER),
    _field("max-wals", _uint, "WAL files kept (0 keeps all).", MEMBER),
    _field(
        "quota-backend-bytes",
        _int,
        "Storage size that raises the NOSPACE alarm (0 means 2 GiB).",
        MEMBER,
    ),
    _field(
        "backend-batch-interval",
        parse_go_duration,
        "Longest time before the backend commits its transaction.",
        MEMBER,
        default_text="",
    ),
    _field(
        "backend-batch-limit",
        _int,
        "Most operations before the backend commits its transaction.",
        MEMBER,
    ),
    _field("max-txn-ops", _uint, "Most operations allowed in one transaction.", MEMBER),
    _field("max-request-bytes", _uint, "Largest client request accepted, in bytes.", MEMBER),
    _field(
        "max-concurrent-streams",
        _uint32,
        "Most concurrent gRPC streams per client connection.",
        MEMBER,
        default_text="math.MaxUint32",
    ),
    _field(
        "grpc-keepalive-min-time",
        parse_go_duration,
        "Shortest interval allowed between client pings.",
        MEMBER,
        default_text="5s",
    ),
    _field(
        "grpc-keepalive-interval",
        parse_go_duration,
        "Period of server pings to clients (0 disables).",
        MEMBER,
        default_text="2h",
    ),
    _field(
        "grpc-keepalive-timeout",
        parse_go_duration,
        "Wait for a ping answer before closing the connection (0 disables).",
        MEMBER,
        default_text="20s",
    ),
    # clustering
    _field(
        "initial-advertise-peer-urls",
        _urls,
        "Peer URLs of this member, as the other members reach it.",
        CLUSTERING,
    ),
    _f(
        "initial-cluster",
        _string,
        "default=http://localhost:2380",
        "Members to bootstrap with, as name=peer-url,...",
        CLUSTERING,
        field="initial_cluster",
    ),
    _field(
        "initial-cluster-state",
        _choice("new", "existing"),
        "'new' to bootstrap a cluster, 'existing' to join one.",
        CLUSTERING,
    ),
    _field(
        "initial-cluster-token",
        _string,
        "Token that keeps clusters bootstrapped side by side apart.",
        CLUSTERING,
    ),
    _field(
        "advertise-client-urls",
        _urls,
        "Client URLs of this member, as clients reach it.",
        CLUSTERING,
    ),
    _f("discovery", _string, "", "Discovery service URL.", CLUSTERING, feature=_DISCOVERY),
    _f(
        "discovery-fallback",
        _choice("proxy", "exit"),
        "proxy",
        "What to do when discovery fails ('exit' or 'proxy').",
        CLUSTERING,
        feature=_DISCOVERY,
    ),
    _f(
        "discovery-proxy",
        _string,
        "",
        "HTTP proxy for the discovery service.",
        CLUSTERING,
        feature=_DISCOVERY,
    ),
    _f(
        "discovery-srv",
        _string,
        "",
        "DNS SRV domain to bootstrap from.",
        CLUSTERING,
        feature=_DISCOVERY,
    ),
    _f(
        "discovery-srv-name",
        _string,
        "",
        "Suffix of the DNS SRV name.",
        CLUSTERING,
        feature=_DISCOVERY,
    ),
    _field(
        "strict-reconfig-check",
        parse_bool,
        "Refuse member changes that would lose quorum.",
        CLUSTERING,
    ),
    _field("pre-vote", parse_bool, "Run the raft pre-vote phase before elections.", CLUSTERING),
    _field(
        "auto-compaction-retention",
        _string,
        "History kept by auto compaction: hours "
        "or a duration (periodic), revisions (revision); 0 disables.",
        CLUSTERING,
    ),
    _field(
        "auto-compaction-mode",
        _string,
        "How to read --auto-compaction-retention: 'periodic' or 'revision'.",
        CLUSTERING,
    ),
    _f("enable-v2", parse_bool, False, "Serve the v2 API.", CLUSTERING, feature=_V2),
    # security
    _f("cert-file", _string, "", "Client TLS certificate.", SECURITY, feature=_TLS),
    _f("key-file", _string, "", "Client TLS key.", SECURITY, feature=_TLS),
    _f("client-cert-auth", parse_bool, False, "Check client certificates.", SECURITY, feature=_TLS),
    _f(
        "client-crl-file",
        _string,
        "",
        "Client certificate revocation list.",
        SECURITY,
        feature=_TLS,
    ),
    _f(
        "client-cert-allowed-hostname",
        _string,
        "",
        "Host name client certificates must carry.",
        SECURITY,
        feature=_TLS,
    ),
    _f("trusted-ca-file", _string, "", "CA for client certificates.", SECURITY, feature=_TLS),
    _f(
        "auto-tls",
        parse_bool,
        False,
        "Client TLS with self-made certificates.",
        SECURITY,
        feature=_TLS,
    ),
    _f("peer-cert-file", _string, "", "Peer TLS certificate.", SECURITY, feature=_TLS),
    _f("peer-key-file", _string, "", "Peer TLS key.", SECURITY, feature=_TLS),
    _f(
        "peer-client-cert-auth",
        parse_bool,
        False,
        "Check peer certificates.",
        SECURITY,
        feature=_TLS,
    ),
    _f("peer-trusted-ca-file", _string, "", "CA for peer certificates.", SECURITY, feature=_TLS),
    _f(
        "peer-cert-allowed-cn",
        _string,
        "",
        "Common name peer certificates must carry.",
        SECURITY,
        feature=_TLS,
    ),
    _f(
        "peer-cert-allowed-hostname",
        _string,
        "",
        "Host name peer certificates must carry.",
        SECURITY,
        feature=_TLS,
    ),
    _f(
        "peer-auto-tls",
        parse_bool,
        False,
        "Peer TLS with self-made certificates.",
        SECURITY,
        feature=_TLS,
    ),
    _f("peer-crl-file", _string, "", "Peer certificate revocation list.", SECURITY, feature=_TLS),
    _f(
        "cipher-suites", _strings, (), "TLS cipher suites, comma-separated.", SECURITY, feature=_TLS
    ),
    _f(
        "cors",
        _strings,
        ("*",),
        "Origins allowed by CORS (etcdpy serves no HTTP API on "
        "client URLs, so any value is accepted).",
        SECURITY,
    ),
    _f(
        "host-whitelist",
        _strings,
        ("*",),
        "Host names allowed in HTTP requests (accepted; no HTTP API on client URLs).",
        SECURITY,
    ),
    # auth
    _field("auth-token", _string, "Auth token type; etcdpy has 'simple' only.", AUTH),
    _field("bcrypt-cost", _uint, "bcrypt cost of password hashes (4 to 31).", AUTH),
    _field("auth-token-ttl", _uint, "Lifetime of a simple token, in seconds.", AUTH),
    # profiling and monitoring
    _field(
        "enable-pprof",
        parse_bool,
        "Serve profiling data under the client URL's /debug/pprof/.",
        MONITORING,
    ),
    _field(
        "metrics",
        _string,
        "Metrics detail: 'basic' or 'extensive' (adds histograms).",
        MONITORING,
    ),
    _field("listen-metrics-urls", _urls, "URLs to serve /metrics and /health on.", MONITORING),
    # logging
    _field(
        "logger",
        _string,
        "'zap' or 'capnslog'; both mean etcdpy's structured logger.",
        LOGGING,
    ),
    _field(
        "log-outputs",
        _strings,
        "'default', 'stderr', 'stdout' or file paths, comma-separated.",
        LOGGING,
    ),
    _field("log-level", _string, "debug, info, warn, error, panic, or fatal.", LOGGING),
    # v2 proxy
    _f(
        "proxy",
        _choice("off", "readonly", "on"),
        "off",
        "Proxy mode ('off', 'readonly' or 'on').",
        PROXY,
        feature=_PROXY,
    ),
    _f(
        "proxy-failure-wait",
        _uint,
        5000,
        "Milliseconds a failed endpoint stays out.",
        PROXY,
        feature=_PROXY,
    ),
    _f(
        "proxy-refresh-interval",
        _uint,
        30000,
        "Milliseconds between endpoint refreshes.",
        PROXY,
        feature=_PROXY,
    ),
    _f("proxy-dial-timeout", _uint, 1000, "Dial timeout in milliseconds.", PROXY, feature=_PROXY),
    _f("proxy-write-timeout", _uint, 5000, "Write timeout in milliseconds.", PROXY, feature=_PROXY),
    _f("proxy-read-timeout", _uint, 0, "Read timeout in milliseconds.", PROXY, feature=_PROXY),
    # experimental
    _f(
        "experimental-initial-corrupt-check",
        parse_bool,
        False,
        "Check data for corruption before serving.",
        EXPERIMENTAL,
        feature=_CORRUPT,
    ),
    _f(
        "experimental-corrupt-check-time",
        parse_go_duration,
        0.0,
        "Period of cluster corruption checks.",
        EXPERIMENTAL,
        feature=_CORRUPT,
        default_text="0s",
    ),
    _f(
        "experimental-enable-v2v3",
        _string,
        "",
        "Serve v2 requests from the v3 store under this prefix.",
        EXPERIMENTAL,
        feature=_V2,
    ),
    _f(
        "experimental-backend-bbolt-freelist-type",
        _choice("array", "map"),
        "array",
        "bbolt freelist type (accepted; etcdpy stores in LMDB).",
        EXPERIMENTAL,
    ),
    _field(
        "experimental-enable-lease-checkpoint",
        parse_bool,
        "Leader checkpoints lease remaining TTLs to the followers.",
        EXPERIMENTAL,
    ),
    _field(
        "experimental-enable-lease-checkpoint-persist",
        parse_bool,
        "Persist the checkpointed TTLs (needs --experimental-enable-lease-checkpoint).",
        HIDDEN,
    ),
    _field(
        "experimental-compaction-batch-limit",
        _int,
        "Most revisions removed per compaction batch.",
        EXPERIMENTAL,
    ),
    _f(
        "experimental-peer-skip-client-san-verification",
        parse_bool,
        False,
        "Skip the SAN check of peer client certificates.",
        EXPERIMENTAL,
        feature=_TLS,
    ),
    _field(
        "experimental-watch-progress-notify-interval",
        parse_go_duration,
        "Period of watch progress notifications.",
        EXPERIMENTAL,
        default_text="10m",
    ),
    _field(
        "experimental-warning-apply-duration",
        parse_go_duration,
        "Log a warning when applying a request takes longer.",
        EXPERIMENTAL,
        default_text="100ms",
    ),
    # unsafe
    _f(
        "force-new-cluster",
        parse_bool,
        False,
        "Restart as a new one-member cluster.",
        UNSAFE,
        feature="no recovery into a new cluster",
    ),
    _field("unsafe-no-fsync", parse_bool, "Never fsync (loses data on a crash).", HIDDEN),
    # to be deprecated
    _f("debug", parse_bool, False, "Same as --log-level=debug.", DEPRECATED),
    _f(
        "log-package-levels",
        _string,
        "",
        "Per-package capnslog levels (accepted, ignored).",
        DEPRECATED,
    ),
    _f("log-output", _strings, ("default",), "Old name of --log-outputs.", HIDDEN),
    _f(
        "enable-grpc-gateway",
        parse_bool,
        True,
        "Serve the JSON gRPC gateway (etcdpy has none yet; accepted).",
        HIDDEN,
    ),
    # flags etcd itself accepts and ignores with a warning
    *(
        FlagDef(name, _ignored, False, "", HIDDEN, is_bool=True, ignored=True)
        for name in (
            "cluster-active-size",
            "cluster-remove-delay",
            "cluster-sync-interval",
            "config",
            "force",
            "max-result-buffer",
            "max-retry-attempts",
            "peer-heartbeat-interval",
            "peer-election-timeout",
            "retry-interval",
            "snapshot",
            "v",
            "vv",
            "test.coverprofile",
            "test.outputdir",
        )
    ),
)

BY_NAME: Mapping[str, FlagDef] = {d.name: d for d in FLAGS}


def _naming(name: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    # Adds the flag's name to NotBuiltYet raised by a value parser (https URLs).
    def parse_named(text: str) -> Any:
        try:
            return parse(text)
        except NotBuiltYet as err:
            raise NotBuiltYet(f"--{name}={text}: {err}") from None

    return parse_named


_SPECS: Mapping[str, goflag.Spec] = {
    d.name: goflag.Spec(d.name, _naming(d.name, d.parse), d.is_bool) for d in FLAGS
}
# Groups in --help order; HIDDEN flags are accepted but not listed, like etcd.
_GROUPS = (
    MEMBER, CLUSTERING, SECURITY, AUTH, MONITORING, LOGGING, PROXY, EXPERIMENTAL, UNSAFE,
    DEPRECATED,
)  # fmt: skip


def env_name(flag: str) -> str:
    """``data-dir`` -> ``ETCD_DATA_DIR``."""
    return f"{ENV_PREFIX}_{flag.replace('-', '_').upper()}"


# -- help and version -------------------------------------------------------------------------

_USAGE = """Usage:

  etcdpy [flags]
    Start an etcdpy server (an etcd v3 compatible member).

  etcdpy --version
    Show the version of etcdpy.

  etcdpy -h | --help
    Show this help.

  etcdpy --config-file <path>
    Read the settings from an etcd YAML configuration file; other flags and ETCD_*
    environment variables are then ignored.

  etcdpy benchmark [options]
    Run the benchmark tool.

Every flag may be written --flag=value, --flag value, -flag=value or -flag value, and set
with an environment variable ETCD_FLAG_NAME (e.g. ETCD_DATA_DIR); a command-line flag
conflicts with the same setting given by environment variable.
Flags marked [not built yet] are accepted only at their default value.
"""


def help_text() -> str:
    """The text ``etcdpy --help`` prints: usage, then the flags in etcd's groups."""
    lines = [_USAGE]
    for group in _GROUPS:
        lines.append(f"{group}:")
        for d in FLAGS:
            if d.group != group:
                continue
            lines.append(f"  --{d.name} '{d.shown_default()}'")
            note = " [not built yet]" if d.kind == "not-built" else ""
            lines.append(f"    {d.help}{note}")
        lines.append("")
    return "\n".join(lines)


def version_text() -> str:
    """What ``etcdpy --version`` prints, in the shape of ``etcd --version``."""
    import platform

    return (
        f"etcdpy Version: {__version__}\n"
        f"API Version: {ETCD_API_VERSION.rsplit('.', 1)[0]}\n"
        f"etcd compatibility: {ETCD_API_VERSION}\n"
        f"Python Version: {platform.python_version()}\n"
        f"OS/Arch: {platform.system().lower()}/{platform.machine()}\n"
    )


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
        parsed = goflag.parse_go_args(argv, _SPECS)
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
        values = _load_config_file(config_file, warnings)
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


# -- the YAML config file ---------------------------------------------------------------------

# The file nests the TLS settings; each key maps to a flag.
_TLS_SECTIONS = {
    "client-transport-security": "",
    "peer-transport-security": "peer-",
}


def _load_config_file(path: str, warnings: list[str]) -> dict[str, Any]:
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
