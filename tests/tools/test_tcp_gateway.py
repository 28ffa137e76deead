"""The gateway's endpoint picking and command-line rules (etcd's tcpproxy, cobra/pflag, Go's
net.SplitHostPort); the proxy itself is tested in tests/integration/test_tcp_gateway.py."""

from __future__ import annotations

import pytest

from etcdpy.cli.gateway import (
    AddrError,
    CheckFailed,
    GatewayOptions,
    HelpRequested,
    UsageError,
    check,
    parse_start_args,
    split_host_port,
)
from etcdpy.tools.tcp_gateway import Picker, Remote


def _remotes(n: int) -> list[Remote]:
    return [Remote("127.0.0.1", 2379 + i) for i in range(n)]


def test_round_robin() -> None:
    remotes = _remotes(3)
    picker = Picker(remotes)
    assert [picker.pick() for _ in range(7)] == [*remotes, *remotes, remotes[0]]


def test_inactive_skipped_and_the_turn_moves_past_it() -> None:
    remotes = _remotes(3)
    picker = Picker(remotes)
    remotes[1].active = False
    # etcd's pick counts a skipped remote as a turn: 0, (1 skipped) 2, 0, (1) 2.
    assert [picker.pick() for _ in range(4)] == [remotes[0], remotes[2], remotes[0], remotes[2]]
    remotes[1].active = True
    assert [picker.pick() for _ in range(3)] == remotes


def test_none_when_none_is_active() -> None:
    remotes = _remotes(2)
    picker = Picker(remotes)
    for r in remotes:
        r.active = False
    assert picker.pick() is None
    remotes[1].active = True
    assert picker.pick() is remotes[1]


def test_remote_addr_as_etcd_logs_it() -> None:
    assert Remote("::1", 7).addr == "::1:7"  # etcd's "%s:%d", no brackets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2379", ("127.0.0.1", "2379")),
        ("[::1]:2379", ("::1", "2379")),
        ("localhost:", ("localhost", "")),
        (":2379", ("", "2379")),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, str]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("127.0.0.1", "missing port in address"),
        ("a:b:c", "too many colons in address"),
        ("[::1]", "missing port in address"),
        ("[::1]:2:3", "too many colons in address"),
        ("[::1", "missing ']' in address"),
        ("a]:1", "unexpected ']' in address"),
    ],
)
def test_split_host_port_errors(text: str, error: str) -> None:
    with pytest.raises(AddrError, match=error.replace("[", r"\[")):
        split_host_port(text)


def test_defaults() -> None:
    options = parse_start_args([])
    assert options.endpoints == ["127.0.0.1:2379"]
    assert options.listen_addr == "127.0.0.1:23790"
    assert options.retry_delay == 60.0


def test_endpoints_a_string_slice() -> None:
    # pflag: the first --endpoints replaces the default, later ones append; CSV within one.
    options = parse_start_args(["--endpoints", "a:1,b:2", "--endpoints=c:3", "x"])
    assert options.endpoints == ["a:1", "b:2", "c:3"]
    assert options.args == ["x"]
    assert parse_start_args(["--endpoints="]).endpoints == []
    assert parse_start_args(['--endpoints="a:1,b:2",c:3']).endpoints == ["a:1,b:2", "c:3"]


def test_values() -> None:
    options = parse_start_args(
        ["--retry-delay=1m30s", "--insecure-discovery", "--listen-addr", "-weird:1"]
    )
    assert options.retry_delay == 90.0
    assert options.insecure_discovery is True
    assert options.listen_addr == "-weird:1"  # a flag's value may start with a dash
    assert parse_start_args(["--insecure-discovery=false"]).insecure_discovery is False


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["x", "--help", "--listen-addr=1"]])
def test_help(args: list[str]) -> None:
    with pytest.raises(HelpRequested):
        parse_start_args(args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nope"], "unknown flag: --nope"),
        (["-hx"], "unknown shorthand flag: 'x' in -x"),
        (["---x"], "bad flag syntax: ---x"),
        (["--retry-delay=1"], 'invalid argument "1" for "--retry-delay" flag: time: invalid'),
        (["--endpoints"], "flag needs an argument: --endpoints"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_start_args(args)
    assert str(err.value).startswith(message)


def test_check_strips_schemes_and_reads_ports_as_etcd() -> None:
    options = GatewayOptions(
        endpoints=["http://127.0.0.1:2379", "127.0.0.1:12ab", "127.0.0.1:70000"],
        listen_addr="127.0.0.1:23790",
    )
    endpoints, host, port = check(options)
    assert endpoints == [("127.0.0.1", 2379), ("127.0.0.1", 12), ("127.0.0.1", 0)]
    assert (host, port) == ("127.0.0.1", "23790")


def test_check_refuses_an_endpoint_that_is_the_listen_address() -> None:
    options = GatewayOptions(endpoints=["127.0.0.1:23790"], listen_addr="127.0.0.1:23790")
    with pytest.raises(CheckFailed, match="should not resolve to the gateway listen addr"):
        check(options)
