"""ServerConfig: defaults that depend on other fields, etcd's checks and etcd's messages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from etcdpy.cli.flags import parse_server_args
from etcdpy.config import (
    URL,
    ConfigError,
    EnvKnobs,
    ServerConfig,
    UnsupportedError,
    check_bootstrap,
    check_join_existing,
    format_initial_cluster,
    parse_duration,
    parse_initial_cluster,
    parse_url,
    parse_urls,
)
from tests.etcd_reference import etcd_binary

# -- URLs -------------------------------------------------------------------------------------


def test_parse_url() -> None:
    assert parse_url(" http://127.0.0.1:2379 ") == URL("http", "127.0.0.1", 2379)
    ipv6 = parse_url("http://[::1]:2380")
    assert ipv6 == URL("http", "::1", 2380)
    assert str(ipv6) == "http://[::1]:2380"
    assert ipv6.netloc == "[::1]:2380"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://x:1", "URL scheme must be http, https, unix, or unixs: ftp://x:1"),
        ("127.0.0.1:2379", "URL scheme must be http, https, unix, or unixs: 127.0.0.1:2379"),
        ("http://x", 'URL address does not have the form "host:port": http://x'),
        ("http://:2379", 'URL address does not have the form "host:port": http://:2379'),
        ("http://x:99999", 'URL address does not have the form "host:port": http://x:99999'),
        ("http://x:1/p", "URL must not contain a path: http://x:1/p"),
    ],
)
def test_bad_urls(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_url(text)
    assert str(info.value) == message
    assert not isinstance(info.value, UnsupportedError)


@pytest.mark.parametrize("text", ["unix://sock:1", "unixs://sock:1"])
def test_schemes_not_built_yet(text: str) -> None:
    with pytest.raises(UnsupportedError, match="not supported yet"):
        parse_url(text)


def test_https_client_urls_are_served() -> None:
    assert str(parse_url("https://127.0.0.1:2379")) == "https://127.0.0.1:2379"


def test_unix_peer_urls_keep_their_host_as_a_file_name() -> None:
    # etcd keeps the case (the host:port is a socket's path) and member IDs hash the text
    url = parse_url("unix://Etcd.Unix:1", peer=True)
    assert (url.scheme, url.host, url.port, str(url)) == (
        "unix",
        "Etcd.Unix",
        1,
        "unix://Etcd.Unix:1",
    )
    assert str(parse_url("unixs://sock:2", peer=True)) == "unixs://sock:2"


def test_url_lists_are_sorted_and_unique_like_etcd() -> None:
    urls = parse_urls("http://b:1,http://a:2, http://b:1")
    assert [str(u) for u in urls] == ["http://a:2", "http://b:1"]
    with pytest.raises(ConfigError, match="no valid URLs given"):
        parse_urls([])


def test_initial_cluster_round_trip() -> None:
    text = "n2=http://10.0.0.2:2380,n1=http://10.0.0.1:2380,,n1=http://10.0.0.1:2381"
    cluster = parse_initial_cluster(text)
    assert list(cluster) == ["n1", "n2"]
    assert format_initial_cluster(cluster) == (
        "n1=http://10.0.0.1:2380,n1=http://10.0.0.1:2381,n2=http://10.0.0.2:2380"
    )
    with pytest.raises(ConfigError, match="must have the form name=url"):
        parse_initial_cluster("n1")


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("5s", 5.0), ("1h30m", 5400.0), ("100ms", 0.1), ("-1.5s", -1.5),
     ("2h", 7200.0), ("1us", 1e-6), (".5m", 30.0)],
)  # fmt: skip
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1h-", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="time: invalid duration"):
        parse_duration(text)


# -- checks with etcd's messages --------------------------------------------------------------

# (flags, etcd's message). Each is also checked against the real etcd below.
ETCD_REFUSALS = [
    (
        ["--election-timeout=10"],
        "--election-timeout[10ms] should be at least as 5 times as --heartbeat-interval[100ms]",
    ),
    (
        ["--election-timeout=60000"],
        "--election-timeout[60000ms] is too long, and should be set less than 50000ms",
    ),
    (["--heartbeat-interval=0"], "--heartbeat-interval must be >0 (set to 0ms)"),
    (
        ["--listen-client-urls=http://127.0.0.1:2379"],
        "--advertise-client-urls is required when --listen-client-urls is set explicitly",
    ),
    (["--auto-compaction-mode=foo"], 'unknown auto-compaction-mode "foo"'),
    (["--logger=foo"], 'unknown logger option "foo"'),
    (
        ["--listen-peer-urls=http://example.com:2380"],
        "expected IP in URL for binding (http://example.com:2380)",
    ),
    (
        ["--experimental-enable-lease-checkpoint-persist"],
        "setting experimental-enable-lease-checkpoint-persist requires "
        "experimental-enable-lease-checkpoint",
    ),
    (["--log-outputs=default,stderr"], 'multi logoutput for "default" is not supported yet'),
]


def our_refusal(argv: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_server_args(argv, {})
    return str(info.value)


@pytest.mark.parametrize(("argv", "message"), ETCD_REFUSALS)
def test_refusals_have_etcd_messages(argv: list[str], message: str) -> None:
    assert our_refusal(argv) == message


@pytest.mark.parametrize(("argv", "message"), ETCD_REFUSALS)
def test_real_etcd_refuses_the_same_way(argv: list[str], message: str, tmp_path: Path) -> None:
    # etcd exits with 1 and logs the reason as a JSON line; nothing starts.
    etcd = etcd_binary()
    logger = ["--logger=zap"] if "--logger=foo" not in argv else []
    result = subprocess.run(
        [etcd, *logger, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    said = [
        json.loads(line)["error"] if line.startswith("{") else line
        for line in result.stderr.splitlines()
    ]
    assert message in said or any(message in line for line in said), result.stderr


def test_unknown_log_level_is_refused() -> None:
    assert our_refusal(["--log-level=loud"]).startswith('unknown level "loud"')


def test_compaction_retention() -> None:
    assert ServerConfig().auto_compaction_retention_value == 0
    periodic = ServerConfig(auto_compaction_retention="5")
    assert periodic.auto_compaction_retention_value == 5 * 3600
    assert ServerConfig(auto_compaction_retention="30m").auto_compaction_retention_value == 1800
    revisions = ServerConfig(auto_compaction_mode="revision", auto_compaction_retention="1000")
    assert revisions.auto_compaction_retention_value == 1000
    with pytest.raises(ConfigError, match="error parsing CompactionRetention"):
        ServerConfig(auto_compaction_retention="soon")


def test_derived_values() -> None:
    c = ServerConfig(name="n1", heartbeat_interval=50, election_timeout=525)
    assert c.data_dir == "n1.etcd"
    assert c.wal_path == "n1.etcd/member/wal"
    assert ServerConfig(wal_dir="/wal").wal_path == "/wal"
    assert c.election_ticks == 10
    assert ServerConfig(quota_backend_bytes=-1).quota_bytes is None
    assert ServerConfig(quota_backend_bytes=1 << 20).quota_bytes == 1 << 20
    # 0 means etcd's default for these two
    zeroes = ServerConfig(
        experimental_compaction_batch_limit=0, experimental_watch_progress_notify_interval=0
    )
    assert zeroes.experimental_compaction_batch_limit == 1000
    assert zeroes.experimental_watch_progress_notify_interval == 600.0


def test_replace_validates_again() -> None:
    c = ServerConfig()
    assert c.replace(name="x").name == "x"
    with pytest.raises(ConfigError):
        c.replace(election_timeout=100)


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        ServerConfig().name = "x"  # type: ignore[misc]


# -- bootstrap checks -------------------------------------------------------------------------


def peer(port: int) -> tuple[URL, ...]:
    return (URL("http", "127.0.0.1", port),)


def test_bootstrap_accepts_a_consistent_cluster() -> None:
    c = ServerConfig(
        name="a",
        initial_advertise_peer_urls=peer(1),
        initial_cluster={"a": peer(1), "b": peer(2)},
    )
    check_bootstrap(c)
    check_join_existing(c)


def test_bootstrap_refusals_have_etcd_messages() -> None:
    c = ServerConfig(name="c", initial_cluster={"a": peer(1)})
    with pytest.raises(ConfigError) as info:
        check_bootstrap(c)
    assert str(info.value) == ('couldn\'t find local name "c" in the initial cluster configuration')
    with pytest.raises(ConfigError, match="couldn't find local name"):
        check_join_existing(c)

    c = ServerConfig(name="a", initial_advertise_peer_urls=peer(1), initial_cluster={"a": peer(9)})
    with pytest.raises(ConfigError) as info:
        check_bootstrap(c)
    assert str(info.value).startswith(
        "--initial-cluster has a=http://127.0.0.1:9 but missing from "
        "--initial-advertise-peer-urls=http://127.0.0.1:1"
    )

    c = ServerConfig(
        name="a",
        initial_advertise_peer_urls=peer(1) + peer(2),
        initial_cluster={"a": peer(1)},
    )
    with pytest.raises(
        ConfigError, match=r"--initial-advertise-peer-urls has http://127\.0\.0\.1:2"
    ):
        check_bootstrap(c)

    c = ServerConfig(
        name="a", initial_advertise_peer_urls=peer(1), initial_cluster={"a": peer(1), "b": peer(1)}
    )
    with pytest.raises(ConfigError, match="has duplicate url"):
        check_bootstrap(c)


def test_env_knobs_default_to_production() -> None:
    assert EnvKnobs.from_environ({}) == EnvKnobs()
    knobs = EnvKnobs()
    assert knobs.client_front and not knobs.raft_trace
    assert knobs.snapshot_catchup_entries == 5000  # etcd's SnapshotCatchUpEntries
    assert knobs.peer_faults_file is None and knobs.core_link_delay_ms == 0.0


def test_env_knobs_read_every_etcdpy_variable() -> None:
    knobs = EnvKnobs.from_environ(
        {
            "ETCDPY_CLIENT_FRONT": "off",
            "ETCDPY_RAFT_TRACE": "1",
            "ETCDPY_SNAPSHOT_CATCHUP_ENTRIES": "5",
            "ETCDPY_PEER_FAULTS_FILE": "/tmp/a.faults",
            "ETCDPY_CORE_LINK_DELAY_MS": "40@1",
            "UNRELATED": "x",
        }
    )
    assert knobs == EnvKnobs(
        client_front=False,
        raft_trace=True,
        snapshot_catchup_entries=5,
        peer_faults_file="/tmp/a.faults",
        core_link_delay_ms=40.0,
        core_link_delay_slot=1,
    )
    assert EnvKnobs.from_environ({"ETCDPY_CORE_LINK_DELAY_MS": "2.5"}).core_link_delay_slot is None
    # As before the knobs moved here: only "off" turns the front off, empty is "no file".
    assert EnvKnobs.from_environ({"ETCDPY_CLIENT_FRONT": "no"}).client_front
    assert EnvKnobs.from_environ({"ETCDPY_PEER_FAULTS_FILE": ""}).peer_faults_file is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("ETCDPY_SNAPSHOT_CATCHUP_ENTRIES", "many"), ("ETCDPY_CORE_LINK_DELAY_MS", "40@x")],
)
def test_bad_env_knobs_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        EnvKnobs.from_environ({name: value})
