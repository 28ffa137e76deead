"""etcdpyctl's command-line layer without a server: global options, environment, aliases,
error wording and exit codes, help; and the formatters (tables, durations, Go integers)."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from etcdpy.cli.ctl import cli, main
from etcdpy.cli.ctl_click import CtlCommand, CtlGroup, Globals, globals_of
from etcdpy.cli.ctl_output import go_duration, hex_escaped, plain_table
from etcdpy.cli.ctl_parse import parse_go_int, parse_hex_id

# -- global options ---------------------------------------------------------------------------


def _probe() -> tuple[click.Group, list[Globals]]:
    """A group shaped like etcdpyctl's (root -> group -> leaf) whose leaf records the globals."""
    seen: list[Globals] = []

    @click.group(cls=CtlGroup, aliases={"alias": "leaf"})
    def root() -> None:
        pass

    @root.group(cls=CtlGroup)
    def sub() -> None:
        pass

    @click.pass_context
    def record(ctx: click.Context) -> None:
        seen.append(globals_of(ctx))

    root.add_command(CtlCommand("leaf", callback=record))
    sub.add_command(CtlCommand("leaf", callback=record))
    return root, seen


def _globals(args: list[str], env: dict[str, str] | None = None) -> Globals:
    root, seen = _probe()
    result = CliRunner().invoke(root, args, env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    return seen[0]


def test_defaults_are_etcdctls() -> None:
    g = _globals(["leaf"], env={"ETCDCTL_ENDPOINTS": "", "ETCDCTL_COMMAND_TIMEOUT": ""})
    assert (g.endpoints, g.write_out, g.dial_timeout, g.command_timeout) == (
        ["127.0.0.1:2379"], "simple", 2.0, 5.0)  # fmt: skip
    assert not g.command_timeout_set and not g.hex


@pytest.mark.parametrize(
    "args",
    [
        ["--endpoints", "e:1", "-w", "json", "leaf"],  # before the command
        ["leaf", "--endpoints", "e:1", "-w", "json"],  # after it, as etcdctl allows
        ["--endpoints", "e:1", "sub", "-w", "json", "leaf"],  # on the group in between
        ["--endpoints", "x:9", "alias", "--endpoints=e:1", "--write-out=json"],  # last one wins
    ],
)
def test_global_options_may_come_anywhere(args: list[str]) -> None:
    g = _globals(args)
    assert (g.endpoints, g.write_out) == (["e:1"], "json")


def test_environment_is_read_and_the_command_line_wins() -> None:
    env = {
        "ETCDCTL_ENDPOINTS": "a:1,b:2",
        "ETCDCTL_DIAL_TIMEOUT": "250ms",
        "ETCDCTL_COMMAND_TIMEOUT": "1m",
        "ETCDCTL_WRITE_OUT": "table",
        "ETCDCTL_HEX": "true",
    }
    g = _globals(["leaf"], env=env)
    assert g.endpoints == ["a:1", "b:2"]
    assert (g.dial_timeout, g.command_timeout, g.command_timeout_set) == (0.25, 60.0, True)
    assert (g.write_out, g.hex) == ("table", True)
    g = _globals(["leaf", "--endpoints", "c:3", "--dial-timeout", "3s"], env=env)
    assert (g.endpoints, g.dial_timeout) == (["c:3"], 3.0)


def test_repeated_and_comma_separated_endpoints() -> None:
    g = _globals(["leaf", "--endpoints", "a:1, b:2", "--endpoints", "c:3"])
    assert g.endpoints == ["a:1", "b:2", "c:3"]


# -- errors: one line, etcdctl's words and exit codes -----------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["get", "--foo"], 1, "unknown flag: --foo"),
        (["get", "k", "--limt", "1"], 1, "unknown flag: --limt (did you mean --limit?)"),
        (["gte", "k"], 1, 'unknown command "gte" for "etcdpyctl" (did you mean "get"?)'),
        (["get"], 128, "get command needs one argument as key and an optional argument as "
                       "range_end"),
        (["get", "k", "--limit", "abc"], 1,
         'invalid argument "abc" for "--limit" flag: strconv.ParseInt: parsing "abc": '
         "invalid syntax"),
        (["get", "k", "--limit"], 1, "flag needs an argument: --limit"),
        (["--dial-timeout", "3x", "get", "k"], 1,
         'invalid argument "3x" for "--dial-timeout" flag: time: invalid duration "3x"'),
        (["-w", "yaml", "get", "k"], 4, "unsupported output format"),
        (["get", "k", "--consistency", "q"], 4, 'unknown consistency flag "q"'),
        (["get", "a", "z", "--prefix"], 128, "too many arguments, only accept one argument "
                                             "when `--prefix` or `--from-key` is set"),
        (["del", "a", "--prefix", "--from-key"], 128,
         "`--prefix` and `--from-key` cannot be set at the same time, choose one"),
        (["put", "k", "v", "--lease", "xyz"], 128,
         'bad lease ID (strconv.ParseInt: parsing "xyz": invalid syntax), expecting ID in Hex'),
        (["lease", "revoke", "0x12"], 128,
         'bad lease ID arg (strconv.ParseInt: parsing "0x12": invalid syntax), expecting ID '
         "in Hex"),
        (["lease", "grant", "ten"], 128, 'bad TTL (strconv.ParseInt: parsing "ten": invalid '
                                         "syntax)"),
        (["member", "remove"], 128, "member ID is not provided"),
        (["member", "add", "n", "http://10.0.0.1:2380"], 128,
         "too many arguments, did you mean --peer-urls=http://10.0.0.1:2380"),
        (["member", "add", "n"], 128, "member peer urls not provided"),
        (["snapshot", "save"], 128, "snapshot save expects one argument"),
        (["compaction", "x1"], 1, 'strconv.ParseInt: parsing "x1": invalid syntax'),
        (["watch", "a", "b", "--prefix"], 128,
         "`range_end` and `--prefix` are mutually exclusive"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_etcdctl_line(
    capsys: pytest.CaptureFixture[str], args: list[str], code: int, error: str
) -> None:
    # None of these reaches a server: each fails while reading its arguments.
    assert run_main(capsys, "--endpoints", "127.0.0.1:1", *args) == (code, "", f"Error: {error}\n")


def test_bad_environment_value_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETCDCTL_DIAL_TIMEOUT", "soon")
    code, _, err = run_main(capsys, "get", "k")
    assert (code, err) == (1, 'Error: invalid value "soon" for ETCDCTL_DIAL_TIMEOUT: time: '
                              'invalid duration "soon"\n')  # fmt: skip


def test_help_lists_commands_aliases_and_global_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "--help")
    assert (code, err) == (0, "")
    words = ["get", "put (set)", "del", "watch", "lease", "member", "endpoint", "snapshot",
             "defrag", "alarm", "compaction", "Global options:", "ETCDCTL_ENDPOINTS"]  # fmt: skip
    for word in words:
        assert word in out
    code, out, _ = run_main(capsys, "get", "--help")
    assert code == 0
    assert out.startswith("Usage: etcdpyctl get [OPTIONS] KEY [RANGE_END]")
    options, globals_ = out.split("Global options:")
    assert "--prefix" in options and "--print-value-only" in options
    assert "--endpoints" in globals_ and "--endpoints" not in options


def test_a_bare_group_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "member")
    assert code == 0
    for sub in ("add", "list", "promote", "remove", "update"):
        assert f"  {sub} " in out


def test_set_and_unique_prefixes_resolve() -> None:
    ctx = click.Context(cli)
    assert cli.get_command(ctx, "set") is cli.get_command(ctx, "put")
    assert cli.get_command(ctx, "memb") is cli.get_command(ctx, "member")
    assert cli.get_command(ctx, "d") is None  # del, defrag: ambiguous


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "version") == (0, "etcdpyctl version: 0.1.0\nAPI version: 3.4\n", "")


# -- formatters -------------------------------------------------------------------------------


def test_plain_table_is_etcdctls_tablewriter_layout() -> None:
    # Copied from etcdctl 3.4.23's `endpoint hashkv -w table` against etcd.
    expected = (
        "+-----------------+------------+\n"
        "|    ENDPOINT     |    HASH    |\n"
        "+-----------------+------------+\n"
        "| 127.0.0.1:23791 | 1084519789 |\n"
        "+-----------------+------------+\n"
    )
    assert plain_table(["endpoint", "hash"], [["127.0.0.1:23791", "1084519789"]]) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.000000512, "512ns"), (0.0000015, "1.5µs"), (0.001305484, "1.305484ms"),
     (0.002, "2ms"), (2.5, "2.5s")],
)  # fmt: skip
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_hex_escaped() -> None:
    assert hex_escaped(b"a\x00\xff") == b"\\x61\\x00\\xff"


@pytest.mark.parametrize(
    ("call", "message"),
    [((lambda: parse_go_int("0x10")), 'strconv.ParseInt: parsing "0x10": invalid syntax'),
     ((lambda: parse_go_int("1_000")), 'strconv.ParseInt: parsing "1_000": invalid syntax'),
     ((lambda: parse_go_int(str(2**63))),
      f'strconv.ParseInt: parsing "{2**63}": value out of range'),
     ((lambda: parse_hex_id("-1", signed=False)),
      'strconv.ParseUint: parsing "-1": invalid syntax')],
)  # fmt: skip
def test_go_integers_are_strict(call: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


def test_go_integers() -> None:
    assert parse_go_int("-42") == -42
    assert parse_hex_id("694d2b3a0b4e8c01") == 0x694D2B3A0B4E8C01
    assert parse_hex_id("ffffffffffffffff", signed=False) == 2**64 - 1


def test_a_bug_is_one_line_unless_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from etcdpy.cli import ctl_kv

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ctl_kv, "get", broken)
    assert run_main(capsys, "get", "k") == (1, "", "Error: RuntimeError: boom\n")
    code, _, err = run_main(capsys, "get", "k", "--debug")
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("Error: RuntimeError: boom\n")
