"""etcd 3.4's server flags: each one's parser, default, help, and what etcdpy does with it.

Every flag etcd 3.4 accepts is here (its ``--help`` list and the ones it hides), in one of
these kinds (``FlagDef.kind``):

- implemented: it sets a field of ``ServerConfig`` (or, for a few, decides one);
- accepted: any value is fine because it cannot change what etcdpy does (``--cors``: we serve
  no HTTP API on the client port; ``--logger=zap``: every logger is our structlog logger);
- not-built (``feature`` is set): accepted at etcd's default, and any other value stops the
  server with exit code 2 and a message naming the flag and the missing feature;
- ignored: the flags etcd itself ignores with a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from etcdpy.cli import goflag
from etcdpy.cli.goflag import parse_bool, parse_go_duration, parse_int, parse_uint
from etcdpy.config import URL, ServerConfig, UnsupportedError, parse_urls

__all__ = [
    "BY_NAME",
    "ENV_PREFIX",
    "FLAGS",
    "GROUPS",
    "HIDDEN",
    "SPECS",
    "FlagDef",
    "NotBuiltYet",
    "env_name",
]

ENV_PREFIX = "ETCD"


class NotBuiltYet(Exception):
    """A flag asks for an etcd feature etcdpy does not have yet (exit code 2)."""


# -- value kinds ------------------------------------------------------------------------------


def _string(text: str) -> str:
    return text


def _urls(text: str, *, peer: bool = False) -> tuple[URL, ...]:
    if text == "":
        return ()
    try:
        return parse_urls(text, peer=peer)
    except UnsupportedError as err:
        # Not a malformed value: the user asks for something we lack; say so plainly.
        raise NotBuiltYet(str(err)) from None


def _peer_urls(text: str) -> tuple[URL, ...]:
    return _urls(text, peer=True)


def _strings(text: str) -> tuple[str, ...]:
    # etcd's unique-strings flags: comma-separated, duplicates dropped, sorted.
    return tuple(sorted({item for item in text.split(",") if item}))


def _list(text: str) -> tuple[str, ...]:
    # etcd's plain strings flag (--cipher-suites): comma-separated, in the order given.
    return tuple(item for item in text.split(",") if item)


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

_PROXY = "no v2 proxy"
_DISCOVERY = "no discovery; use --initial-cluster"
_V2 = "no v2 API"
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
    _field(
        "listen-peer-urls", _peer_urls, "URLs to listen on for raft traffic from peers.", MEMBER
    ),
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
        "frontend-processes",
        _uint,
        "etcdpy: processes serving the client URLs (0: cores - 1, at most 8; 1: no front-ends).",
        MEMBER,
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
        _peer_urls,
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
    _field("cert-file", _string, "Path to the client server TLS cert file.", SECURITY),
    _field("key-file", _string, "Path to the client server TLS key file.", SECURITY),
    _field("client-cert-auth", parse_bool, "Enable client cert authentication.", SECURITY),
    _field(
        "client-crl-file", _string, "Path to the client certificate revocation list file.", SECURITY
    ),
    _field(
        "client-cert-allowed-hostname",
        _string,
        "Allowed TLS hostname for client cert authentication.",
        SECURITY,
    ),
    _field(
        "trusted-ca-file", _string, "Path to the client server TLS trusted CA cert file.", SECURITY
    ),
    _field(
        "auto-tls",
        parse_bool,
        "Client TLS using generated certificates (clients cannot verify them).",
        SECURITY,
    ),
    _field("peer-cert-file", _string, "Peer TLS certificate.", SECURITY),
    _field("peer-key-file", _string, "Peer TLS key.", SECURITY),
    _field(
        "peer-client-cert-auth",
        parse_bool,
        "Require and verify peer client certificates.",
        SECURITY,
    ),
    _field("peer-trusted-ca-file", _string, "CA for peer certificates.", SECURITY),
    _field(
        "peer-cert-allowed-cn",
        _string,
        "Common name peer certificates must carry.",
        SECURITY,
    ),
    _field(
        "peer-cert-allowed-hostname",
        _string,
        "Host name peer certificates must carry.",
        SECURITY,
    ),
    _field(
        "peer-auto-tls",
        parse_bool,
        "Peer TLS with a self-signed certificate made at start (peers are not verified).",
        SECURITY,
    ),
    _field("peer-crl-file", _string, "Peer certificate revocation list.", SECURITY),
    _field(
        "cipher-suites",
        _list,
        "Comma-separated list of supported TLS cipher suites between client/server and peers "
        "(Go's names; empty: OpenSSL's defaults).",
        SECURITY,
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
    _field(
        "auth-token",
        _string,
        "simple, or jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...",
        AUTH,
    ),
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
        field="experimental_initial_corrupt_check",
    ),
    _f(
        "experimental-corrupt-check-time",
        parse_go_duration,
        0.0,
        "Period of cluster corruption checks.",
        EXPERIMENTAL,
        field="experimental_corrupt_check_time",
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
    _field(
        "experimental-peer-skip-client-san-verification",
        parse_bool,
        "Skip the SAN check of peer client certificates.",
        EXPERIMENTAL,
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


SPECS: Mapping[str, goflag.Spec] = {
    d.name: goflag.Spec(d.name, _naming(d.name, d.parse), d.is_bool) for d in FLAGS
}
# Groups in --help order; HIDDEN flags are accepted but not listed, like etcd.
GROUPS = (
    MEMBER, CLUSTERING, SECURITY, AUTH, MONITORING, LOGGING, PROXY, EXPERIMENTAL, UNSAFE,
    DEPRECATED,
)  # fmt: skip


def env_name(flag: str) -> str:
    """``data-dir`` -> ``ETCD_DATA_DIR``."""
    return f"{ENV_PREFIX}_{flag.replace('-', '_').upper()}"
