"""etcd's command line: every etcd 3.4 flag is known, parsed with Go's rules, with etcd's
defaults; environment variables and the YAML config file as etcd reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdpy.cli.flags import (
    BY_NAME,
    FLAGS,
    FlagError,
    NotBuiltYet,
    ParseOutcome,
    env_name,
    help_text,
    parse_server_args,
)
from etcdpy.config import (
    URL,
    ConfigError,
    ServerConfig,
    default_frontend_processes,
)
from tests.etcd_reference import etcd_help_flags, etcd_source_flags, parse_help_flags


def config_of(argv: list[str], env: dict[str, str] | None = None) -> ServerConfig:
    outcome = parse_server_args(argv, env or {})
    assert outcome.action == "run"
    assert outcome.config is not None
    return outcome.config


def run_outcome(argv: list[str], env: dict[str, str] | None = None) -> ParseOutcome:
    return parse_server_args(argv, env or {})


# -- every flag of etcd is known, with etcd's default ----------------------------------------


def test_every_flag_of_etcd_help_is_known() -> None:
    missing = sorted(set(etcd_help_flags()) - set(BY_NAME))
    assert missing == []


def test_every_flag_registered_in_etcd_source_is_known() -> None:
    missing = sorted(etcd_source_flags() - set(BY_NAME))
    assert missing == []


# Defaults etcdpy changes on purpose, with the value etcd 3.4 shows.
DELIBERATE_DEFAULTS = {"pre-vote": "false"}


def test_help_shows_etcd_defaults_for_every_flag_etcd_lists() -> None:
    ours = parse_help_flags(help_text())
    theirs = etcd_help_flags()
    wrong = {
        name: (ours.get(name), default)
        for name, default in theirs.items()
        if ours.get(name) != default and name not in DELIBERATE_DEFAULTS
    }
    assert wrong == {}
    for name, etcd_default in DELIBERATE_DEFAULTS.items():
        assert theirs.get(name) == etcd_default, name  # still etcd's default there
        assert ours.get(name) != etcd_default, name


def test_each_etcd_flag_at_its_default_value_is_accepted() -> None:
    # Giving a flag its default changes nothing, even for features we lack.
    defaults = etcd_help_flags()
    plain = config_of([])
    for name, default in defaults.items():
        if name in ("data-dir", "max-concurrent-streams", "backend-batch-interval"):
            continue  # help shows these symbolically; etcd rejects the text too
        if name == "listen-client-urls":
            continue  # needs --advertise-client-urls as well; tested below
        if name in DELIBERATE_DEFAULTS:
            continue
        argv = [f"--{name}={default}"] if BY_NAME[name].is_bool else [f"--{name}", default]
        assert config_of(argv) == plain, name


def test_defaults_equal_etcd() -> None:
    c = ServerConfig()
    assert c.name == "default"
    assert c.data_dir == "default.etcd"
    assert c.snapshot_count == 100000
    assert (c.heartbeat_interval, c.election_timeout) == (100, 1000)
    assert c.election_ticks == 10
    assert c.max_request_bytes == 1572864
    assert c.max_txn_ops == 128
    assert c.quota_backend_bytes == 0
    assert c.quota_bytes == 2 * 1024**3
    assert c.listen_client_urls == (URL("http", "localhost", 2379),)
    assert c.advertise_client_urls == (URL("http", "localhost", 2379),)
    assert c.listen_peer_urls == (URL("http", "localhost", 2380),)
    assert c.initial_advertise_peer_urls == (URL("http", "localhost", 2380),)
    assert c.cluster == {"default": (URL("http", "localhost", 2380),)}
    assert (c.initial_cluster_state, c.initial_cluster_token) == ("new", "etcd-cluster")
    assert (c.auto_compaction_mode, c.auto_compaction_retention) == ("periodic", "0")
    assert (c.log_level, c.logger, c.log_outputs) == ("info", "capnslog", ("default",))
    assert (c.grpc_keepalive_min_time, c.grpc_keepalive_interval) == (5.0, 7200.0)
    assert c.grpc_keepalive_timeout == 20.0
    assert c.max_concurrent_streams == 2**32 - 1
    assert (c.strict_reconfig_check, c.pre_vote, c.enable_pprof) == (True, True, False)
    assert (c.max_snapshots, c.max_wals, c.metrics) == (5, 5, "basic")
    assert (c.auth_token, c.bcrypt_cost, c.auth_token_ttl) == ("simple", 10, 300)
    assert config_of([]) == c


def test_every_flag_has_a_known_kind() -> None:
    kinds = {d.name: d.kind for d in FLAGS}
    assert kinds["name"] == "implemented"
    assert kinds["cors"] == "accepted"
    assert kinds["cert-file"] == "implemented"
    assert kinds["enable-v2"] == "not-built"
    assert kinds["snapshot"] == "ignored"
    for d in FLAGS:
        if d.field is not None:
            assert hasattr(ServerConfig(), d.field), d.name


# -- Go's syntax -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--name=n1"],
        ["--name", "n1"],
        ["-name", "n1"],
        ["-name=n1"],
    ],
)
def test_four_spellings_of_a_flag(argv: list[str]) -> None:
    assert config_of(argv).name == "n1"


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        (["--election-timeout", "1500"], "election_timeout", 1500),
        (["-heartbeat-interval=0x14"], "heartbeat_interval", 20),  # Go's base prefixes
        (["--max-txn-ops=010"], "max_txn_ops", 8),  # a leading 0 is octal in Go
        (["-grpc-keepalive-min-time", "1m30s"], "grpc_keepalive_min_time", 90.0),
        (
            ["--experimental-warning-apply-duration=250ms"],
            "experimental_warning_apply_duration",
            0.25,
        ),
        (["--quota-backend-bytes=-1"], "quota_backend_bytes", -1),
        (["--log-outputs", "stdout,stderr,stdout"], "log_outputs", ("stderr", "stdout")),
        (["--initial-cluster-state=existing"], "initial_cluster_state", "existing"),
        (["--data-dir", "-strange-dir"], "data_dir", "-strange-dir"),  # next arg, even "-x"
    ],
)
def test_value_flags(argv: list[str], field: str, expected: object) -> None:
    assert getattr(config_of(argv), field) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pre-vote"], True),
        (["-pre-vote"], True),
        (["--pre-vote=true"], True),
        (["--pre-vote=1"], True),
        (["--pre-vote=T"], True),
        (["--pre-vote=false"], False),
        (["-pre-vote=0"], False),
        (["--pre-vote", "--pre-vote=False"], False),  # the last one wins
    ],
)
def test_boolean_flags(argv: list[str], expected: bool) -> None:
    assert config_of(argv).pre_vote is expected


def test_boolean_value_must_be_attached_with_equals() -> None:
    with pytest.raises(FlagError, match=r"'false' is not a valid flag \(give a boolean"):
        parse_server_args(["--pre-vote", "false"], {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nmae", "x"], "flag provided but not defined: -nmae\n(did you mean --name?)"),
        (["--election-timout=5"], "(did you mean --election-timeout?)"),
        (["--zzzzzz"], "flag provided but not defined: -zzzzzz"),
        (["--name"], "flag needs an argument: -name"),
        (["---name=x"], "bad flag syntax: ---name=x"),
        (["--election-timeout=abc"], 'invalid value "abc" for flag -election-timeout: parse error'),
        (["--max-txn-ops=-1"], 'invalid value "-1" for flag -max-txn-ops: parse error'),
        (["--enable-v2=maybe"], 'invalid boolean value "maybe" for -enable-v2: parse error'),
        (["--initial-cluster-state=foo"], "for flag -initial-cluster-state: invalid value"),
        (["--grpc-keepalive-min-time=5"], "for flag -grpc-keepalive-min-time: parse error"),
        (
            ["--listen-client-urls=ftp://x:1"],
            "URL scheme must be http, https, unix, or unixs: ftp://x:1",
        ),
        (["extra"], "'extra' is not a valid flag"),
        (["--", "--name=x"], "'--name=x' is not a valid flag"),
    ],
)
def test_bad_command_lines(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        parse_server_args(argv, {})
    assert message in str(info.value)


def test_unknown_flag_without_a_close_name_has_no_suggestion() -> None:
    with pytest.raises(FlagError) as info:
        parse_server_args(["--zzzzzz"], {})
    assert "did you mean" not in str(info.value)


def test_help_and_version() -> None:
    assert run_outcome(["-h"]).action == "help"
    assert run_outcome(["--name=x", "--help"]).action == "help"
    assert run_outcome(["--version"]).action == "version"


def test_ignored_flags_of_etcd_warn() -> None:
    outcome = run_outcome(["--snapshot", "-v"])
    assert outcome.warnings == (
        'flag "-snapshot" is no longer supported - ignoring.',
        'flag "-v" is no longer supported - ignoring.',
    )


# -- features not built yet -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--enable-v2"],
        ["--proxy=on"],
        ["--proxy-dial-timeout=5"],
        ["--discovery=https://discovery.etcd.io/x"],
        ["--discovery-srv", "example.com"],
        ["--force-new-cluster"],
    ],
)
def test_not_built_features_are_refused_with_the_flag_named(argv: list[str]) -> None:
    name = argv[0].lstrip("-").split("=")[0]
    with pytest.raises(NotBuiltYet) as info:
        parse_server_args(argv, {})
    assert str(info.value).startswith(f"--{name}=")
    assert "not built yet in etcdpy" in str(info.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["--enable-v2=false"],
        ["--cert-file="],
        ["--proxy=off"],
        ["--discovery-fallback=proxy"],
        ["--logger=zap"],
        ["--cors=http://a.example:1"],
        ["--enable-grpc-gateway=false"],
        ["--experimental-backend-bbolt-freelist-type=map"],
        ["--auth-token=simple"],
    ],
)
def test_meaningless_or_default_values_are_accepted(argv: list[str]) -> None:
    assert run_outcome(argv).action == "run"


def test_unix_client_url_is_refused_naming_the_flag() -> None:
    with pytest.raises(NotBuiltYet) as info:
        parse_server_args(["--listen-client-urls=unixs://c.sock:2379"], {})
    text = str(info.value)
    assert text.startswith("--listen-client-urls=unixs://c.sock:2379: ")
    assert "client unix socket listeners are not built yet" in text


@pytest.mark.parametrize(
    "value",
    [
        "jwt,pub-key=a.pub",  # no sign-method
        "jwt,sign-method=XX256",
        "jwt,sign-method=RS256,ttl=5",  # a duration needs a unit
        "jwt,sign-method=RS256,ttl",
        "jwt,sign-method=RS256,ttl=1m,ttl=2m",
        "simple,a=b=c",
        "foo",
    ],
)
def test_bad_auth_token_options_get_etcds_message(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^auth: invalid auth options$"):
        parse_server_args([f"--auth-token={value}"], {})


def test_jwt_auth_token_options_are_accepted() -> None:
    value = "jwt,pub-key=a.pub,priv-key=a,sign-method=ES256,ttl=10m"
    config = run_outcome([f"--auth-token={value}"]).config
    assert config is not None and config.auth_token == value


# -- the rules etcd applies between flags ----------------------------------------------------


def test_listen_client_urls_without_advertise_is_refused_like_etcd() -> None:
    with pytest.raises(ConfigError) as info:
        parse_server_args(["--listen-client-urls=http://127.0.0.1:2379"], {})
    assert str(info.value) == (
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    )


def test_initial_cluster_follows_the_name_when_not_given() -> None:
    c = config_of(["--name=n1", "--initial-advertise-peer-urls=http://127.0.0.1:12380"])
    assert c.cluster == {"n1": (URL("http", "127.0.0.1", 12380),)}
    assert c.data_dir == "n1.etcd"


def test_initial_cluster_is_parsed() -> None:
    c = config_of(
        [
            "--initial-cluster",
            "b=http://10.0.0.2:2380,a=http://10.0.0.1:2380,a=http://10.0.0.1:2381",
        ]
    )
    assert list(c.cluster) == ["a", "b"]
    assert c.cluster["a"] == (URL("http", "10.0.0.1", 2380), URL("http", "10.0.0.1", 2381))


def test_debug_flag_means_debug_level() -> None:
    assert config_of(["--debug"]).log_level == "debug"


def test_deprecated_log_output_is_used_with_a_warning() -> None:
    outcome = run_outcome(["--log-output=stdout"])
    assert outcome.config is not None and outcome.config.log_outputs == ("stdout",)
    assert any("deprecated" in w for w in outcome.warnings)
    with pytest.raises(ConfigError, match="only set '--log-outputs'"):
        parse_server_args(["--log-output=stdout", "--log-outputs=stderr"], {})


# -- environment variables ---------------------------------------------------------------------


def test_env_name() -> None:
    assert env_name("data-dir") == "ETCD_DATA_DIR"
    assert env_name("experimental-enable-v2v3") == "ETCD_EXPERIMENTAL_ENABLE_V2V3"


def test_environment_sets_flags_not_on_the_command_line() -> None:
    outcome = run_outcome(
        ["--name=n1"],
        {
            "ETCD_DATA_DIR": "/var/lib/x",
            "ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:2379",
            "ETCD_ADVERTISE_CLIENT_URLS": "http://127.0.0.1:2379",
            "ETCD_PRE_VOTE": "true",
            "ETCD_AUTO_COMPACTION_MODE": "",  # empty: ignored, as etcd
            "PATH": "/bin",
        },
    )
    c = outcome.config
    assert c is not None
    assert (c.name, c.data_dir, c.pre_vote) == ("n1", "/var/lib/x", True)
    assert c.listen_client_urls == (URL("http", "127.0.0.1", 2379),)
    assert outcome.sources["data-dir"] == "env"
    assert outcome.sources["name"] == "flag"
    assert outcome.warnings == ()


def test_environment_variable_conflicting_with_a_flag_is_fatal() -> None:
    with pytest.raises(ConfigError) as info:
        parse_server_args(["--data-dir=/a"], {"ETCD_DATA_DIR": "/b"})
    assert str(info.value) == (
        'conflicting environment variable "ETCD_DATA_DIR" is shadowed by corresponding '
        "command-line flag (either unset environment variable or disable flag)"
    )


def test_unrecognized_environment_variable_is_a_warning_as_in_etcd() -> None:
    outcome = run_outcome([], {"ETCD_NOT_A_FLAG": "1", "ETCDCTL_API": "3"})
    assert outcome.warnings == ("unrecognized environment variable ETCD_NOT_A_FLAG=1",)


def test_invalid_environment_value_is_refused_like_etcd() -> None:
    with pytest.raises(ConfigError) as info:
        parse_server_args([], {"ETCD_ELECTION_TIMEOUT": "abc"})
    assert str(info.value) == 'invalid value "abc" for ETCD_ELECTION_TIMEOUT: parse error'


def test_not_built_feature_from_the_environment_names_the_variable() -> None:
    with pytest.raises(NotBuiltYet, match=r"--enable-v2=true \(from ETCD_ENABLE_V2\)"):
        parse_server_args([], {"ETCD_ENABLE_V2": "true"})


# -- the YAML config file -------------------------------------------------------------------


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_config_file_with_etcd_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "etcd.yml",
        """
name: n1
data-dir: /data/n1
listen-client-urls: http://127.0.0.1:2379,http://127.0.0.1:22379
advertise-client-urls: http://127.0.0.1:2379
initial-cluster: n1=http://127.0.0.1:2380
initial-advertise-peer-urls: http://127.0.0.1:2380
election-timeout: 1500
pre-vote: true
grpc-keepalive-min-time: 3000000000
log-outputs: [stderr]
client-transport-security:
  cert-file: ""
  auto-tls: false
""",
    )
    outcome = run_outcome(["--config-file", path, "--name=ignored"], {"ETCD_NAME": "ignored"})
    c = outcome.config
    assert c is not None
    assert (c.name, c.data_dir, c.election_timeout, c.pre_vote) == ("n1", "/data/n1", 1500, True)
    assert len(c.listen_client_urls) == 2
    assert c.grpc_keepalive_min_time == 3.0  # etcd's file has durations in nanoseconds
    assert c.log_outputs == ("stderr",)


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path / "etcd.yml", "name: from-file\nsnapshot-count: 5\n")
    c = config_of([], {"ETCD_CONFIG_FILE": path})
    assert (c.name, c.snapshot_count) == ("from-file", 5)


def test_config_file_reads_client_tls_and_warns_about_unknown_keys(tmp_path: Path) -> None:
    tls = write(
        tmp_path / "tls.yml",
        "client-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n"
        "  trusted-ca-file: /ca.pem\n  client-cert-auth: true\n  auto-tls: true\n",
    )
    c = config_of(["--config-file", tls])
    assert (c.cert_file, c.key_file, c.trusted_ca_file) == ("/c.pem", "/k.pem", "/ca.pem")
    assert c.client_cert_auth and c.auto_tls
    odd = write(tmp_path / "odd.yml", "name: a\nnot-a-key: 1\n")
    outcome = run_outcome([f"--config-file={odd}"])
    assert any('unknown key "not-a-key"' in w for w in outcome.warnings)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="open"):
        parse_server_args(["--config-file", str(tmp_path / "missing.yml")], {})
    bad = write(tmp_path / "bad.yml", "election-timeout: soon\n")
    with pytest.raises(ConfigError, match="election-timeout"):
        parse_server_args(["--config-file", bad], {})
    short = write(tmp_path / "short.yml", "election-timeout: 100\n")
    with pytest.raises(ConfigError, match="at least as 5 times"):
        parse_server_args(["--config-file", short], {})


def test_corrupt_check_time_is_built() -> None:
    outcome = parse_server_args(["--experimental-corrupt-check-time=1m"], {})
    assert outcome.config is not None
    assert outcome.config.experimental_corrupt_check_time == 60.0


def test_initial_corrupt_check_is_built() -> None:
    outcome = parse_server_args(["--experimental-initial-corrupt-check=true"], {})
    assert outcome.config is not None
    assert outcome.config.experimental_initial_corrupt_check is True


# -- peer TLS ----------------------------------------------------------------------------------


def test_peer_tls_flags_and_https_peer_urls(tmp_path: Path) -> None:
    c = config_of(
        [
            "--listen-peer-urls=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls=https://127.0.0.1:2380",
            "--initial-cluster=default=https://127.0.0.1:2380",
            "--peer-cert-file=/p.pem",
            "--peer-key-file=/k.pem",
            "--peer-client-cert-auth",
            "--peer-cert-allowed-cn=etcd",
            "--experimental-peer-skip-client-san-verification",
        ],
        {"ETCD_PEER_TRUSTED_CA_FILE": "/ca.pem", "ETCD_PEER_CRL_FILE": "/crl.pem"},
    )
    assert [str(u) for u in c.listen_peer_urls] == ["https://127.0.0.1:2380"]
    assert [str(u) for u in c.cluster["default"]] == ["https://127.0.0.1:2380"]
    assert (c.peer_cert_file, c.peer_key_file, c.peer_trusted_ca_file) == (
        "/p.pem",
        "/k.pem",
        "/ca.pem",
    )
    assert c.peer_client_cert_auth and c.experimental_peer_skip_client_san_verification
    assert (c.peer_cert_allowed_cn, c.peer_crl_file) == ("etcd", "/crl.pem")


def test_config_file_peer_transport_security(tmp_path: Path) -> None:
    path = write(
        tmp_path / "peer.yml",
        "peer-transport-security:\n  cert-file: /p.pem\n  key-file: /k.pem\n"
        "  trusted-ca-file: /ca.pem\n  client-cert-auth: true\n  auto-tls: true\n",
    )
    c = config_of(["--config-file", path])
    assert (c.peer_cert_file, c.peer_key_file, c.peer_trusted_ca_file) == (
        "/p.pem",
        "/k.pem",
        "/ca.pem",
    )
    assert c.peer_client_cert_auth and c.peer_auto_tls


def test_client_tls_flags_and_https_client_urls() -> None:
    c = config_of(
        [
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
            "--listen-metrics-urls=https://127.0.0.1:2381",
            "--cert-file=/c.pem",
            "--key-file=/k.pem",
            "--trusted-ca-file=/ca.pem",
            "--client-cert-auth",
            "--client-crl-file=/crl.pem",
            "--client-cert-allowed-hostname=client.example",
            "--auto-tls",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256",
        ]
    )
    assert [str(u) for u in c.listen_client_urls] == ["https://127.0.0.1:2379"]
    assert [str(u) for u in c.advertise_client_urls] == ["https://127.0.0.1:2379"]
    assert [str(u) for u in c.listen_metrics_urls] == ["https://127.0.0.1:2381"]
    assert (c.cert_file, c.key_file, c.trusted_ca_file) == ("/c.pem", "/k.pem", "/ca.pem")
    assert (c.client_crl_file, c.client_cert_allowed_hostname) == ("/crl.pem", "client.example")
    assert c.client_cert_auth and c.auto_tls
    # in the order given (etcd's plain strings flag), not sorted
    assert c.cipher_suites == ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256")


@pytest.mark.parametrize(("cores", "frontends"), [(1, 1), (2, 1), (3, 2), (4, 3), (9, 8), (64, 8)])
def test_default_frontend_processes_leave_the_core_a_core(
    monkeypatch: pytest.MonkeyPatch, cores: int, frontends: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)))
    assert default_frontend_processes() == frontends
    assert config_of([]).frontend_count == frontends
    assert config_of(["--frontend-processes", "2"]).frontend_count == 2
