"""The ``etcdpy`` command: exit codes and messages in a real subprocess, dispatch in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.cli import server_main
from etcdpy.cli.flags import BY_NAME, HIDDEN
from etcdpy.config import ServerConfig
from etcdpy.observability.logging import shutdown_logging
from tests.etcd_reference import parse_help_flags


def etcdpy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "etcdpy.cli.server_main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
    )


def test_unknown_flag_exits_2_with_a_suggestion() -> None:
    result = etcdpy("--data-dri=/tmp/x")
    assert result.returncode == 2
    assert "flag provided but not defined: -data-dri" in result.stderr
    assert "did you mean --data-dir?" in result.stderr


def test_not_built_feature_exits_2_naming_the_flag() -> None:
    result = etcdpy("--enable-v2")
    assert result.returncode == 2
    assert "--enable-v2=true: not built yet in etcdpy" in result.stderr


def test_refused_configuration_exits_1_with_a_json_log_line() -> None:
    result = etcdpy("--election-timeout=10")
    assert result.returncode == 1
    event = json.loads(result.stderr.strip().splitlines()[-1])
    assert event["level"] == "warn"
    assert event["msg"] == "failed to verify flags"
    assert event["error"].startswith("--election-timeout[10ms] should be at least")


def test_conflicting_environment_exits_1() -> None:
    result = etcdpy("--name=a", env={"ETCD_NAME": "b"})
    assert result.returncode == 1
    assert 'conflicting environment variable \\"ETCD_NAME\\"' in result.stderr


def test_version() -> None:
    result = etcdpy("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("etcdpy Version: 0.1.0\nAPI Version: 3.4\n")


def test_help_lists_every_flag_etcd_lists() -> None:
    result = etcdpy("--help")
    assert result.returncode == 0
    listed = set(parse_help_flags(result.stdout))
    expected = {d.name for d in BY_NAME.values() if d.group != HIDDEN}
    assert listed == expected


def test_etcd_subcommands_we_lack_exit_2() -> None:
    result = etcdpy("grpc-proxy", "start")
    assert result.returncode == 2
    assert "not built yet" in result.stderr


# -- in-process: what main hands to the server and to the benchmark --------------------------


@pytest.fixture
def fake_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[object]]]:
    calls: dict[str, list[object]] = {"run": [], "benchmark": []}

    def run(config: ServerConfig) -> int:
        calls["run"].append(config)
        return 7

    def benchmark(argv: list[str]) -> int:
        calls["benchmark"].append(argv)
        return 3

    server_run = types.ModuleType("etcdpy.cli.run")
    server_run.run = run  # type: ignore[attr-defined]
    tools = types.ModuleType("etcdpy.tools.benchmark")
    tools.main = benchmark  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "etcdpy.cli.run", server_run)
    monkeypatch.setitem(sys.modules, "etcdpy.tools.benchmark", tools)
    yield calls
    shutdown_logging()


def test_main_hands_the_config_to_the_server(
    fake_modules: dict[str, list[object]], tmp_path: Path
) -> None:
    log = tmp_path / "log"
    code = server_main.main(
        ["--name", "n1", f"--log-outputs={log}", "--snapshot"], environ={"ETCD_MAX_TXN_OPS": "64"}
    )
    assert code == 7
    [config] = fake_modules["run"]
    assert isinstance(config, ServerConfig)
    assert (config.name, config.max_txn_ops) == ("n1", 64)
    messages = [json.loads(line)["msg"] for line in log.read_text().splitlines()]
    assert 'flag "-snapshot" is no longer supported - ignoring.' in messages
    assert "starting etcdpy" in messages


def test_benchmark_subcommand_is_dispatched(fake_modules: dict[str, list[object]]) -> None:
    assert server_main.main(["benchmark", "--clients", "8", "put"]) == 3
    assert fake_modules["benchmark"] == [["--clients", "8", "put"]]
    assert fake_modules["run"] == []


def test_missing_modules_are_reported_not_raised() -> None:
    assert server_main._lazy("etcdpy.no_such_module", "run") is None
    with pytest.raises(AttributeError):
        server_main._lazy("etcdpy.config", "no_such_function")


def test_https_peer_url_without_certificate_exits_1_with_etcds_message(tmp_path: Path) -> None:
    url = "https://127.0.0.1:23999"
    result = etcdpy(
        f"--data-dir={tmp_path / 'd'}",
        f"--listen-peer-urls={url}",
        f"--initial-advertise-peer-urls={url}",
        f"--initial-cluster=default={url}",
    )
    assert result.returncode == 1
    event = json.loads(result.stderr.strip().splitlines()[-1])
    assert event["error"] == (
        "cannot listen on TLS for 127.0.0.1:23999: KeyFile and CertFile are not presented"
    )
    assert not (tmp_path / "d" / "member").exists()  # refused before anything was written


def _refusal(*args: str) -> str:
    result = etcdpy(*args)
    assert result.returncode == 1, result.stderr
    return str(json.loads(result.stderr.strip().splitlines()[-1])["error"])


def test_client_tls_misconfigurations_exit_1_with_etcds_messages(tmp_path: Path) -> None:
    url = "https://127.0.0.1:23998"
    data = f"--data-dir={tmp_path / 'd'}"
    urls = (f"--listen-client-urls={url}", f"--advertise-client-urls={url}")
    assert _refusal(data, *urls) == (
        "TLS key/cert (--cert-file, --key-file) must be provided for client url "
        "https://127.0.0.1:23998 with HTTPS scheme"
    )
    assert _refusal(data, "--listen-metrics-urls=https://127.0.0.1:23997") == (
        "cannot listen on TLS for 127.0.0.1:23997: KeyFile and CertFile are not presented"
    )
    assert _refusal(data, "--cipher-suites=TLS_NOT_A_SUITE") == (
        'unexpected TLS cipher suite "TLS_NOT_A_SUITE"'
    )
    missing = tmp_path / "missing.pem"
    assert _refusal(data, *urls, f"--cert-file={missing}", f"--key-file={missing}") == (
        f"open {missing}: no such file or directory"
    )
    assert not (tmp_path / "d" / "member").exists()  # refused before anything was written
