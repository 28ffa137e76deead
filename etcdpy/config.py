"""The server's configuration: one frozen value holding every setting etcdpy uses.

Field names are etcd's flag names in snake_case (``--max-txn-ops`` -> ``max_txn_ops``), with
etcd 3.4's defaults. Units follow the flags: ``heartbeat_interval`` and ``election_timeout``
are integer milliseconds, flags that take a Go duration (``--grpc-keepalive-min-time=5s``)
become float seconds.

A ``ServerConfig`` that exists is valid: ``__post_init__`` fills the defaults that depend on
other fields (``data_dir`` from ``name``, ``initial_cluster`` from ``name`` and the advertised
peer URLs) and checks the rules etcd checks before it starts, with etcd's messages.
``check_bootstrap`` holds the checks etcd makes later, only when it bootstraps a new member.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "DEFAULT_QUOTA_BACKEND_BYTES",
    "LOG_LEVELS",
    "ConfigError",
    "EnvKnobs",
    "ServerConfig",
    "UnsupportedError",
    "check_bootstrap",
    "check_join_existing",
    "format_initial_cluster",
    "go_quote",
    "parse_duration",
    "parse_initial_cluster",
    "parse_url",
    "parse_urls",
]


def go_quote(text: str) -> str:
    """``text`` quoted the way Go's ``%q`` does it, so our messages read like etcd's."""
    return json.dumps(text, ensure_ascii=False)


class ConfigError(ValueError):
    """A setting is invalid; etcd would refuse to start (its exit code for this is 1)."""


class UnsupportedError(ConfigError):
    """A setting asks for a feature etcd has and etcdpy does not have yet."""


# -- constants: etcd 3.4's defaults -----------------------------------------------------------

DEFAULT_NAME = "default"
DEFAULT_LISTEN_PEER_URLS = "http://localhost:2380"
DEFAULT_LISTEN_CLIENT_URLS = "http://localhost:2379"
DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024 * 1024 * 1024  # what --quota-backend-bytes=0 means
MAX_SUGGESTED_QUOTA_BACKEND_BYTES = 8 * 1024 * 1024 * 1024
MAX_ELECTION_TIMEOUT_MS = 50000
DEFAULT_COMPACTION_BATCH_LIMIT = 1000  # what 0 means for --experimental-compaction-batch-limit
DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL = 600.0  # seconds; what 0 means for the flag
# zap's level names; etcd accepts dpanic as well although its help does not list it.
LOG_LEVELS = ("debug", "info", "warn", "error", "dpanic", "panic", "fatal")
LOGGERS = ("zap", "capnslog")
METRICS_LEVELS = ("basic", "extensive")

ClusterState = Literal["new", "existing"]
CompactionMode = Literal["periodic", "revision"]

# -- URLs -------------------------------------------------------------------------------------

_UNSUPPORTED_SCHEMES = {
    "unixs": "client unix socket listeners are not built yet; unixs works for peer URLs",
    "unix": "client unix socket listeners are not built yet; unix works for peer URLs",
}
# Schemes served on peer URLs (a unix URL's socket is the file "host:port", as in etcd).
PEER_SCHEMES: Final = ("http", "https", "unix", "unixs")
UNIX_SCHEMES: Final = ("unix", "unixs")
TLS_SCHEMES: Final = ("https", "unixs")


@dataclass(frozen=True, slots=True, order=True)
class URL:
    """One ``scheme://host:port`` URL; ``host`` has no brackets, even for IPv6."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def netloc(self) -> str:
        """``host:port`` as gRPC and sockets want it (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(text: str, *, peer: bool = False) -> URL:
    """Parse one URL the way etcd's ``types.NewURLs`` checks it (same messages).

    Schemes etcd accepts but etcdpy cannot serve yet raise ``UnsupportedError``: unix and
    unixs are served on peer URLs (``peer=True``) only; client unix sockets are still missing.
    A unix URL's host keeps its case (it names a file).
    """
    text = text.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f'URL address does not have the form "host:port": {text}') from None
    scheme = parts.scheme
    if scheme not in ("http", "https", "unix", "unixs"):
        raise ConfigError(f"URL scheme must be http, https, unix, or unixs: {text}")
    if scheme in _UNSUPPORTED_SCHEMES and not (peer and scheme in PEER_SCHEMES):
        reason = _UNSUPPORTED_SCHEMES[scheme]
        raise UnsupportedError(f"URL scheme {scheme!r} is not supported yet ({reason}): {text}")
    if port is None or parts.hostname is None or parts.username or parts.password:
        raise ConfigError(f'URL address does not have the form "host:port": {text}')
    if parts.path:
        raise ConfigError(f"URL must not contain a path: {text}")
    if parts.query or parts.fragment:
        raise ConfigError(f"URL must not contain a query or fragment: {text}")
    # urlsplit lower-cases the host; that is harmless for IPs and DNS names, not for the file
    # name of a unix socket (etcd keeps the case).
    if scheme in UNIX_SCHEMES:
        return URL(scheme, parts.netloc.rpartition(":")[0].strip("[]"), port)
    return URL(scheme, parts.hostname, port)


def parse_urls(value: str | Iterable[str], *, peer: bool = False) -> tuple[URL, ...]:
    """Comma-separated URLs (or an iterable of them), sorted and without duplicates.

    etcd keeps URL lists sorted by their text and unique; so do we, so that two members
    given the same URLs in a different order agree on them.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    if not items:
        raise ConfigError("no valid URLs given")
    urls = {parse_url(item, peer=peer) for item in items}
    return tuple(sorted(urls, key=str))


def parse_initial_cluster(text: str) -> dict[str, tuple[URL, ...]]:
    """``name1=url,name1=url2,name2=url3`` -> {name: peer URLs}, names sorted.

    As in etcd, a name may appear several times (one entry per URL) and empty entries are
    skipped; an entry without ``=`` is an error.
    """
    raw: dict[str, list[str]] = {}
    for entry in text.split(","):
        if not entry:
            continue
        name, sep, url = entry.partition("=")
        if not sep:
            raise ConfigError(
                f"--initial-cluster entry {go_quote(entry)} must have the form name=url"
            )
        raw.setdefault(name, []).append(url)
    return {name: parse_urls(raw[name], peer=True) for name in sorted(raw)}


def format_initial_cluster(cluster: Mapping[str, Iterable[URL]]) -> str:
    """The inverse of ``parse_initial_cluster`` (etcd's ``URLsMap.String`` order)."""
    pairs = sorted(f"{name}={url}" for name, urls in cluster.items() for url in urls)
    return ",".join(pairs)


# -- Go durations -----------------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go ``time.ParseDuration`` string (``"1h30m"``, ``"100ms"``, ``"-1.5s"``) in seconds.

    As in Go, a bare number other than ``0`` has no unit and is an error.
    """
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ConfigError(f"time: invalid duration {go_quote(text)}")
    total = 0.0
    pos = 0
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if match is None:
            raise ConfigError(f"time: invalid duration {go_quote(text)}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


AUTH_TOKEN_KINDS = ("simple", "jwt")
INVALID_AUTH_OPTIONS = "auth: invalid auth options"


def parse_auth_token(options: str) -> tuple[str, dict[str, str]]:
    """``--auth-token`` as etcd splits it (auth/store.go decomposeOpts): the token kind, then
    ``name=value`` options; a malformed or repeated option, or an unknown kind, is etcd's
    ``auth: invalid auth options``. A jwt's sign-method and ttl are checked here too (its key
    files are read when the member starts)."""
    kind, *pairs = options.split(",")
    opts: dict[str, str] = {}
    for pair in pairs:
        parts = pair.split("=")
        if len(parts) != 2 or parts[0] in opts:
            raise ConfigError(INVALID_AUTH_OPTIONS)
        opts[parts[0]] = parts[1]
    if kind not in AUTH_TOKEN_KINDS:
        raise ConfigError(INVALID_AUTH_OPTIONS)
    if kind == "jwt":
        if opts.get("sign-method", "") not in JWT_SIGN_METHODS:
            raise ConfigError(INVALID_AUTH_OPTIONS)  # etcd: invalid signature method -> this
        if opts.get("ttl"):
            try:
                parse_duration(opts["ttl"])
            except ConfigError:
                raise ConfigError(INVALID_AUTH_OPTIONS) from None
    return kind, opts


JWT_SIGN_METHODS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512", "HS256", "HS384", "HS512"),
)


# -- the configuration ------------------------------------------------------------------------


MAX_DEFAULT_FRONTENDS = 8


def default_frontend_processes() -> int:
    """One front-end per usable core beyond the one the core process needs, at most 8; none on
    one or two cores, where the front-ends' extra memory and hops cost more than they give
    (measured: README, "Front-end processes")."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    frontends = min(cores - 1, MAX_DEFAULT_FRONTENDS)
    return frontends if frontends >= 2 else 1


def _default_listen_peer_urls() -> tuple[URL, ...]:
    return (URL("http", "localhost", 2380),)


def _default_client_urls() -> tuple[URL, ...]:
    return (URL("http", "localhost", 2379),)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every setting of an etcdpy member, with etcd 3.4's defaults."""

    # member
    name: str = DEFAULT_NAME
    data_dir: str = ""  # "" means "<name>.etcd", as etcd
    wal_dir: str = ""  # "" means <data_dir>/member/wal
    snapshot_count: int = 100000
    heartbeat_interval: int = 100  # ms; one raft tick
    election_timeout: int = 1000  # ms
    initial_election_tick_advance: bool = True
    listen_peer_urls: tuple[URL, ...] = field(default_factory=_default_listen_peer_urls)
    listen_client_urls: tuple[URL, ...] = field(default_factory=_default_client_urls)
    max_snapshots: int = 5  # 0 = keep all
    max_wals: int = 5  # 0 = keep all
    quota_backend_bytes: int = 0  # 0 = DEFAULT_QUOTA_BACKEND_BYTES, < 0 = no quota
    backend_batch_interval: float = 0.0  # seconds; 0 = the backend's own default
    backend_batch_limit: int = 0  # 0 = the backend's own default
    max_txn_ops: int = 128
    max_request_bytes: int = 1572864  # 1.5 MiB
    max_concurrent_streams: int = 2**32 - 1
    # etcdpy's own: processes serving the client URLs (0: cores - 1, at most 8; 1: this one)
    frontend_processes: int = 0
    grpc_keepalive_min_time: float = 5.0  # seconds
    grpc_keepalive_interval: float = 7200.0  # seconds; 0 disables
    grpc_keepalive_timeout: float = 20.0  # seconds; 0 disables

    # clustering
    initial_advertise_peer_urls: tuple[URL, ...] = field(default_factory=_default_listen_peer_urls)
    # None means {name: initial_advertise_peer_urls}, as etcd derives it from --name.
    initial_cluster: Mapping[str, tuple[URL, ...]] | None = None
    initial_cluster_state: ClusterState = "new"
    initial_cluster_token: str = "etcd-cluster"
    advertise_client_urls: tuple[URL, ...] = field(default_factory=_default_client_urls)
    strict_reconfig_check: bool = True
    # On by default, unlike etcd 3.4 (as etcd 3.5): with it off a restarted or partitioned member
    # forces needless elections (chaos runs: new-leader p99 8 s off, 1.7 s on).
    pre_vote: bool = True
    auto_compaction_retention: str = "0"  # "0" disables; see auto_compaction_retention_value
    auto_compaction_mode: CompactionMode = "periodic"

    # client TLS (etcd's ClientTLSInfo and ClientAutoTLS; etcdpy.clientport.tls)
    cert_file: str = ""
    key_file: str = ""
    client_cert_auth: bool = False
    trusted_ca_file: str = ""
    client_crl_file: str = ""
    client_cert_allowed_hostname: str = ""
    auto_tls: bool = False
    # Go's names; client and peer TLS both (etcd's CipherSuites; etcdpy.tls.ciphers)
    cipher_suites: tuple[str, ...] = ()

    # peer TLS (etcd's PeerTLSInfo and PeerAutoTLS; etcdpy.peer.tls)
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_client_cert_auth: bool = False
    peer_trusted_ca_file: str = ""
    peer_cert_allowed_cn: str = ""
    peer_cert_allowed_hostname: str = ""
    peer_auto_tls: bool = False
    peer_crl_file: str = ""
    experimental_peer_skip_client_san_verification: bool = False

    # auth (simple tokens only for now)
    auth_token: str = "simple"
    bcrypt_cost: int = 10
    auth_token_ttl: int = 300  # seconds

    # profiling and monitoring
    enable_pprof: bool = False
    metrics: str = "basic"
    # seconds between the leader's HashKV comparisons with the other members (0: never)
    experimental_corrupt_check_time: float = 0.0
    # a restarted member compares its HashKV with its peers' before it serves (etcd's check)
    experimental_initial_corrupt_check: bool = False
    listen_metrics_urls: tuple[URL, ...] = ()

    # logging: every logger name maps to our structlog setup
    logger: str = "capnslog"
    log_outputs: tuple[str, ...] = ("default",)
    log_level: str = "info"

    # experimental features etcdpy has
    experimental_enable_lease_checkpoint: bool = False
    experimental_enable_lease_checkpoint_persist: bool = False
    experimental_compaction_batch_limit: int = DEFAULT_COMPACTION_BATCH_LIMIT
    experimental_watch_progress_notify_interval: float = DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL
    experimental_warning_apply_duration: float = 0.1  # seconds

    # unsafe
    unsafe_no_fsync: bool = False

    def __post_init__(self) -> None:
        if not self.data_dir:
            object.__setattr__(self, "data_dir", f"{self.name}.etcd")
        if self.initial_cluster is None:
            name = self.name or DEFAULT_NAME
            derived = {name: self.initial_advertise_peer_urls}
            object.__setattr__(self, "initial_cluster", derived)
        if self.experimental_compaction_batch_limit <= 0:
            object.__setattr__(
                self, "experimental_compaction_batch_limit", DEFAULT_COMPACTION_BATCH_LIMIT
            )
        if self.experimental_watch_progress_notify_interval <= 0:
            object.__setattr__(
                self,
                "experimental_watch_progress_notify_interval",
                DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
            )
        _validate(self)

    # -- derived values ---------------------------------------------------------------------

    @property
    def cluster(self) -> Mapping[str, tuple[URL, ...]]:
        """``initial_cluster`` after defaulting (never None)."""
        assert self.initial_cluster is not None
        return self.initial_cluster

    @property
    def election_ticks(self) -> int:
        """Election timeout in raft ticks (one tick per heartbeat interval), as etcd."""
        return self.election_timeout // self.heartbeat_interval

    @property
    def frontend_count(self) -> int:
        """Front-end processes to start; 1 means the member serves its clients itself."""
        return self.frontend_processes or default_frontend_processes()

    @property
    def quota_bytes(self) -> int | None:
        """The storage quota in bytes, or None when the quota is disabled (negative flag)."""
        if self.quota_backend_bytes < 0:
            return None
        return self.quota_backend_bytes or DEFAULT_QUOTA_BACKEND_BYTES

    @property
    def wal_path(self) -> str:
        """Where the WAL lives: --wal-dir, or <data-dir>/member/wal."""
        return self.wal_dir or f"{self.data_dir}/member/wal"

    @property
    def auto_compaction_retention_value(self) -> float:
        """The retention as a number: seconds in periodic mode, revisions in revision mode.

        As etcd: a plain non-negative integer is hours (periodic) or revisions (revision);
        anything else must be a Go duration. 0 disables auto compaction.
        """
        return _compaction_retention(self.auto_compaction_mode, self.auto_compaction_retention)

    def replace(self, **changes: object) -> ServerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _compaction_retention(mode: str, retention: str) -> float:
    if re.fullmatch(r"\d+", retention):
        count = int(retention)
        return float(count * 3600) if mode == "periodic" else float(count)
    try:
        return parse_duration(retention)
    except ConfigError as err:
        raise ConfigError(f"error parsing CompactionRetention: {err}") from None


def _check_bind_urls(urls: Iterable[URL]) -> None:
    # We bind to IPs only, as etcd does (localhost is the one name allowed; a unix URL names
    # a file).
    for url in urls:
        if url.host == "localhost" or url.scheme in UNIX_SCHEMES:
            continue
        try:
            ipaddress.ip_address(url.host)
        except ValueError:
            raise ConfigError(f"expected IP in URL for binding ({url})") from None


def _validate(cfg: ServerConfig) -> None:
    """The checks etcd's ``embed.Config.Validate`` makes, in its order, with its messages."""
    for urls in (cfg.listen_peer_urls, cfg.listen_client_urls, cfg.listen_metrics_urls):
        _check_bind_urls(urls)
    if cfg.initial_cluster_state not in ("new", "existing"):
        raise ConfigError(f"unexpected clusterState {go_quote(cfg.initial_cluster_state)}")
    if cfg.heartbeat_interval <= 0:
        raise ConfigError(f"--heartbeat-interval must be >0 (set to {cfg.heartbeat_interval}ms)")
    if cfg.election_timeout <= 0:
        raise ConfigError(f"--election-timeout must be >0 (set to {cfg.election_timeout}ms)")
    if 5 * cfg.heartbeat_interval > cfg.election_timeout:
        raise ConfigError(
            f"--election-timeout[{cfg.election_timeout}ms] should be at least as 5 times as "
            f"--heartbeat-interval[{cfg.heartbeat_interval}ms]"
        )
    if cfg.election_timeout > MAX_ELECTION_TIMEOUT_MS:
        raise ConfigError(
            f"--election-timeout[{cfg.election_timeout}ms] is too long, and should be set "
            f"less than {MAX_ELECTION_TIMEOUT_MS}ms"
        )
    if cfg.listen_client_urls and not cfg.advertise_client_urls:
        raise ConfigError(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        )
    if cfg.auto_compaction_mode not in ("periodic", "revision"):
        raise ConfigError(f"unknown auto-compaction-mode {go_quote(cfg.auto_compaction_mode)}")
    _compaction_retention(cfg.auto_compaction_mode, cfg.auto_compaction_retention)
    if cfg.experimental_enable_lease_checkpoint_persist and not (
        cfg.experimental_enable_lease_checkpoint
    ):
        raise ConfigError(
            "setting experimental-enable-lease-checkpoint-persist requires "
            "experimental-enable-lease-checkpoint"
        )
    if cfg.logger not in LOGGERS:
        raise ConfigError(f"unknown logger option {go_quote(cfg.logger)}")
    if cfg.log_level not in LOG_LEVELS:
        # etcd panics here; a message is kinder.
        raise ConfigError(
            f"unknown level {go_quote(cfg.log_level)} (--log-level supports debug, info, warn, "
            "error, panic, or fatal)"
        )
    _validate_log_outputs(cfg.log_outputs)
    if cfg.metrics not in METRICS_LEVELS:
        raise ConfigError(
            f"unknown --metrics {go_quote(cfg.metrics)} (expected 'basic' or 'extensive')"
        )
    parse_auth_token(cfg.auth_token)  # the key files are read when the member starts
    for name, value in (
        ("--snapshot-count", cfg.snapshot_count),
        ("--max-txn-ops", cfg.max_txn_ops),
        ("--max-request-bytes", cfg.max_request_bytes),
        ("--max-concurrent-streams", cfg.max_concurrent_streams),
    ):
        if value <= 0:
            raise ConfigError(f"{name} must be >0 (set to {value})")
    for name, seconds in (
        ("--grpc-keepalive-min-time", cfg.grpc_keepalive_min_time),
        ("--grpc-keepalive-interval", cfg.grpc_keepalive_interval),
        ("--grpc-keepalive-timeout", cfg.grpc_keepalive_timeout),
        ("--backend-batch-interval", cfg.backend_batch_interval),
    ):
        if seconds < 0 or math.isnan(seconds):
            raise ConfigError(f"{name} must not be negative (set to {seconds}s)")
    for member, urls in cfg.cluster.items():
        if not urls:
            raise ConfigError(f"--initial-cluster has no peer URL for {go_quote(member)}")


def _validate_log_outputs(outputs: tuple[str, ...]) -> None:
    if not outputs:
        raise ConfigError("either '--log-output' or '--log-outputs' flag must be set")
    if len(outputs) > 1 and "default" in outputs:
        raise ConfigError('multi logoutput for "default" is not supported yet')


# -- checks etcd makes when it bootstraps a member -------------------------------------------


def _duplicate_url(cluster: Mapping[str, tuple[URL, ...]]) -> bool:
    seen: set[URL] = set()
    for urls in cluster.values():
        for url in urls:
            if url in seen:
                return True
            seen.add(url)
    return False


def _has_local_member(cfg: ServerConfig) -> None:
    if cfg.name not in cfg.cluster:
        raise ConfigError(
            f"couldn't find local name {go_quote(cfg.name)} in the initial cluster configuration"
        )


def check_bootstrap(cfg: ServerConfig) -> None:
    """What etcd checks before it bootstraps a brand-new member (empty data dir, state new).

    URLs are compared as written; etcd also resolves DNS names, which we do not.
    """
    _has_local_member(cfg)
    listed = set(cfg.cluster[cfg.name])
    advertised = set(cfg.initial_advertise_peer_urls)
    advertised_text = ",".join(sorted(str(u) for u in advertised))
    missing = sorted(str(u) for u in listed - advertised)
    if missing:
        pairs = ",".join(f"{cfg.name}={u}" for u in missing)
        raise ConfigError(
            f"--initial-cluster has {pairs} but missing from "
            f"--initial-advertise-peer-urls={advertised_text}"
        )
    extra = sorted(str(u) for u in advertised - listed)
    if extra:
        own = format_initial_cluster({cfg.name: cfg.initial_advertise_peer_urls})
        raise ConfigError(
            f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
            f"--initial-cluster={own}"
        )
    if _duplicate_url(cfg.cluster):
        raise ConfigError(
            f"initial cluster {format_initial_cluster(cfg.cluster)} has duplicate url"
        )


def check_join_existing(cfg: ServerConfig) -> None:
    """What etcd checks before a new member joins an existing cluster (state existing)."""
    _has_local_member(cfg)
    if _duplicate_url(cfg.cluster):
        raise ConfigError(
            f"initial cluster {format_initial_cluster(cfg.cluster)} has duplicate url"
        )


# -- environment knobs ------------------------------------------------------------------------
# Settings etcd has no flag for: debugging aids and test-only fault injection. This is the one
# place that reads them; the entry points (etcdpy.cli.run, etcdpy.cli.frontend_run) call
# ``EnvKnobs.from_environ(os.environ)`` once and pass the values on. A member's front-end
# processes inherit its environment, so both see the same knobs.

CLIENT_FRONT_ENV: Final = "ETCDPY_CLIENT_FRONT"
RAFT_TRACE_ENV: Final = "ETCDPY_RAFT_TRACE"
SNAPSHOT_CATCHUP_ENTRIES_ENV: Final = "ETCDPY_SNAPSHOT_CATCHUP_ENTRIES"
PEER_FAULTS_FILE_ENV: Final = "ETCDPY_PEER_FAULTS_FILE"
CORE_LINK_DELAY_ENV: Final = "ETCDPY_CORE_LINK_DELAY_MS"
DEFAULT_SNAPSHOT_CATCHUP_ENTRIES: Final = 5000  # etcd's SnapshotCatchUpEntries


@dataclass(frozen=True, slots=True)
class EnvKnobs:
    """The ``ETCDPY_*`` environment variables, read once. The defaults are production's.

    ``ETCDPY_CLIENT_FRONT`` (``client_front``, default on): ``off`` serves the client URLs with
    grpc.aio's server and no HTTP, a reference to measure h2grpc against and an escape hatch
    (read by etcdpy.clientport.listeners).
    ``ETCDPY_RAFT_TRACE`` (``raft_trace``, default off): any non-empty value logs the raft core's
    trace (elections, votes) for debugging (etcdpy.server.etcd_server).
    ``ETCDPY_SNAPSHOT_CATCHUP_ENTRIES`` (``snapshot_catchup_entries``, default 5000, as etcd):
    raft entries kept after a snapshot for slow followers; tests lower it to force snapshot
    transfers (etcdpy.server.cluster_runtime).
    ``ETCDPY_PEER_FAULTS_FILE`` (``peer_faults_file``, tests only): a file listing, one per line
    in hex, the members this one cannot talk to: a network partition the test edits while the
    member runs (etcdpy.testing.faults.PeerFaultFile, given to etcdpy.peer.transport).
    ``ETCDPY_CORE_LINK_DELAY_MS`` (``core_link_delay_ms``/``core_link_delay_slot``, tests only):
    ``MS`` or ``MS@SLOT``: (that slot's) front-end handles the core's records MS milliseconds
    late, in order, as if the link were slow (etcdpy.testing.faults.LinkDelay, given to
    etcdpy.corelink.client).
    """

    client_front: bool = True
    raft_trace: bool = False
    snapshot_catchup_entries: int = DEFAULT_SNAPSHOT_CATCHUP_ENTRIES
    peer_faults_file: str | None = None
    core_link_delay_ms: float = 0.0
    core_link_delay_slot: int | None = None  # None: every front-end

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> EnvKnobs:
        """The knobs ``environ`` sets (pass ``os.environ``); ``ConfigError`` names a bad one."""
        delay_ms, slot = _link_delay(environ.get(CORE_LINK_DELAY_ENV, ""))
        return cls(
            client_front=environ.get(CLIENT_FRONT_ENV, "on") != "off",
            raft_trace=bool(environ.get(RAFT_TRACE_ENV)),
            snapshot_catchup_entries=_env_int(
                environ, SNAPSHOT_CATCHUP_ENTRIES_ENV, DEFAULT_SNAPSHOT_CATCHUP_ENTRIES
            ),
            peer_faults_file=environ.get(PEER_FAULTS_FILE_ENV) or None,
            core_link_delay_ms=delay_ms,
            core_link_delay_slot=slot,
        )


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={go_quote(text)} is not an integer") from None


def _link_delay(text: str) -> tuple[float, int | None]:
    """``MS`` or ``MS@SLOT`` -> (milliseconds, slot or None); "" is no delay."""
    if not text:
        return 0.0, None
    millis, _, only = text.partition("@")
    try:
        return float(millis), int(only) if only else None
    except ValueError:
        raise ConfigError(f"{CORE_LINK_DELAY_ENV}={go_quote(text)} is not MS or MS@SLOT") from None
