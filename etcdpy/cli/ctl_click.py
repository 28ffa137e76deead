"""The click machinery under etcdpyctl's commands: global options that may come before or
after the command (as etcdctl's persistent flags), ``ETCDCTL_*`` environment variables,
command aliases and unique-prefix matching, help with a "Global options" section, and click's
usage errors turned into etcdctl's one-line ``Error: ...`` messages and exit codes.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from etcdpy.cli.ctl_client import EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR, Client, CtlError
from etcdpy.cli.ctl_login import UserFlags
from etcdpy.cli.ctl_output import FORMATS, Output
from etcdpy.cli.ctl_parse import parse_go_int, parse_hex_id
from etcdpy.cli.ctl_security import TlsSettings

__all__ = [
    "ENV_PREFIX",
    "CtlCommand",
    "CtlGroup",
    "Globals",
    "GoBool",
    "Int64",
    "bool_option",
    "debug_wanted",
    "error_of_usage",
    "globals_of",
    "go_bool_args",
    "hex_arg",
    "run_with",
]

PROG = "etcdpyctl"
ENV_PREFIX = "ETCDCTL"
_GIVEN = "etcdpyctl.given"  # ctx.meta key: global options given on the command line


def _flag_name(param: click.Parameter | None) -> str:
    if param is None:
        return "?"
    opts: list[str] = list(getattr(param, "opts", []))
    longs = [o for o in opts if o.startswith("--")]
    return (longs or opts or [param.name or "?"])[0]


class _GoValue(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A flag value parsed as etcdctl's Go flags parse it; errors in pflag's words."""

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as err:
            raise CtlUsage(f'invalid argument "{value}" for "{_flag_name(param)}" flag: {err}',
                           EXIT_ERROR) from None  # fmt: skip


class Int64(_GoValue):
    name = "int"

    def parse(self, text: str) -> int:
        return parse_go_int(text)


class GoBool(_GoValue):
    """A Go bool flag's value (``--insecure-transport=false``)."""

    name = "bool"

    def parse(self, text: str) -> bool:
        return _go_bool(text)


class Duration(_GoValue):
    """A Go duration (``2s``, ``500ms``, ``1m30s``) in seconds."""

    name = "duration"

    def parse(self, text: str) -> float:
        from etcdpy.config import ConfigError, parse_duration

        try:
            return parse_duration(text)
        except ConfigError as err:
            raise ValueError(str(err)) from None


class WriteOut(click.ParamType):  # type: ignore[type-arg]
    name = "format"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value not in FORMATS:
            raise CtlUsage("unsupported output format", EXIT_BAD_FEATURE)
        return value


class CtlUsage(click.ClickException):
    """A usage error already in etcdctl's words, with etcdctl's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- global options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Global:
    name: str  # click's parameter name; the flag is --name with dashes
    decls: tuple[str, ...]
    default: Any
    help: str
    kind: Any = None  # click type; None for boolean flags

    @property
    def flag(self) -> str:
        return self.decls[-1]

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}_{self.flag.removeprefix('--').replace('-', '_').upper()}"


GLOBALS: tuple[_Global, ...] = (
    _Global("endpoints", ("--endpoints",), ("127.0.0.1:2379",),
            "gRPC endpoints, comma-separated (or repeated).", str),
    _Global("write_out", ("-w", "--write-out"), "simple",
            "Output format: simple, json or table.", WriteOut()),
    _Global("dial_timeout", ("--dial-timeout",), 2.0,
            "Dial timeout for client connections.", Duration()),
    _Global("command_timeout", ("--command-timeout",), 5.0,
            "Timeout for short running commands (excluding dial timeout).", Duration()),
    _Global("hex", ("--hex",), False, "Print keys and values as hex escapes (\\xNN).", None),
    # The TLS files' parameter names are not "key" etc.: get's KEY argument has that name.
    _Global("cacert_file", ("--cacert",), "",
            "Verify certificates of TLS-enabled secure servers using this CA bundle.", str),
    _Global("cert_file", ("--cert",), "",
            "Identify secure client using this TLS certificate file.", str),
    _Global("key_file", ("--key",), "", "Identify secure client using this TLS key file.", str),
    _Global("insecure_transport", ("--insecure-transport",), True,
            "Disable transport security for client connections (host:port endpoints).",
            GoBool()),
    _Global("insecure_skip_tls_verify", ("--insecure-skip-tls-verify",), False,
            "Skip server certificate verification (CAUTION: for testing only).", None),
    _Global("user", ("--user",), "",
            "username[:password] for authentication (prompt if password is not supplied).",
            str),
    _Global("password", ("--password",), "",
            "Password for authentication (if this option is used, --user option shouldn't "
            "include password).", str),
    _Global("debug", ("--debug",), False, "Show a Python traceback with unexpected errors.",
            None),
)  # fmt: skip
_GLOBAL_NAMES = frozenset(g.name for g in GLOBALS)
_DEFAULT_TEXT = {"endpoints": "127.0.0.1:2379", "write_out": "simple", "dial_timeout": "2s",
                 "command_timeout": "5s", "insecure_transport": "true"}  # fmt: skip
_METAVARS = {"endpoints": "HOST:PORT,...", "write_out": "simple|json|table", "cacert_file": "FILE",
             "cert_file": "FILE", "key_file": "FILE", "user": "NAME[:PASSWORD]", "password": "TEXT",
             "insecure_transport": "BOOL"}  # fmt: skip


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Records a global option given on the command line; the last one given wins, at
    whatever level of the command it came (root, group or leaf)."""
    unset_flag = value is False and getattr(param, "is_flag", False)
    if value is None or value == () or unset_flag:
        return value
    given: dict[str, Any] = ctx.meta.setdefault(_GIVEN, {})
    given[param.name or ""] = value
    return value


def _global_params() -> list[click.Parameter]:
    params: list[click.Parameter] = []
    for g in GLOBALS:
        default_text = _DEFAULT_TEXT.get(g.name)
        suffix = f" [env: {g.env}" + (f"; default: {default_text}]" if default_text else "]")
        common: dict[str, Any] = {"help": g.help + suffix, "expose_value": False,
                                  "callback": _remember}  # fmt: skip
        metavar = _METAVARS.get(g.name, "DURATION")
        if g.kind is None:
            params.append(click.Option([*g.decls, g.name], is_flag=True, **common))
        elif isinstance(g.kind, GoBool):  # default true: --flag=false turns it off
            params.append(click.Option([*g.decls, g.name], type=g.kind, is_flag=False,
                                       flag_value="true", metavar=metavar, **common))  # fmt: skip
        else:
            multiple = g.name == "endpoints"
            params.append(click.Option([*g.decls, g.name], type=g.kind, multiple=multiple,
                                       metavar=metavar, **common))  # fmt: skip
    return params


@dataclass(frozen=True)
class Globals:
    """The global options in force: command line, else ``ETCDCTL_*``, else the default."""

    endpoints: list[str]
    write_out: str
    dial_timeout: float
    command_timeout: float
    command_timeout_set: bool
    hex: bool
    debug: bool
    tls: TlsSettings = field(default_factory=TlsSettings)
    user: UserFlags = field(default_factory=UserFlags)

    def client(self) -> Client:
        return Client(self.endpoints, self.dial_timeout, self.command_timeout,
                      self.command_timeout_set, self.tls, self.user)  # fmt: skip

    def output(self, *, value_only: bool = False) -> Output:
        return Output(self.write_out, hex_bytes=self.hex, value_only=value_only)


def _go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _from_env(g: _Global) -> Any:
    text = os.environ.get(g.env, "")
    if not text:
        return None
    try:
        if g.kind is None:
            return _go_bool(text)
        if g.name == "endpoints":
            return (text,)
        return g.kind.convert(text, None, None) if isinstance(g.kind, _GoValue) else text
    except (ValueError, CtlUsage) as err:
        reason = str(err).split(" flag: ", 1)[-1]
        raise CtlUsage(f'invalid value "{text}" for {g.env}: {reason}', EXIT_ERROR) from None


def globals_of(ctx: click.Context) -> Globals:
    given: dict[str, Any] = ctx.meta.get(_GIVEN, {})
    values: dict[str, Any] = {}
    for g in GLOBALS:
        value = given.get(g.name)
        if value is None:
            value = _from_env(g)
        values[g.name] = g.default if value is None else value
    if values["write_out"] not in FORMATS:  # from the environment
        raise CtlUsage("unsupported output format", EXIT_BAD_FEATURE)
    for name, flag in (("cert_file", "cert"), ("key_file", "key"), ("cacert_file", "cacert")):
        if given.get(name) == "":
            raise CtlError(f"empty string is passed to --{flag} option", EXIT_BAD_ARGS)
    endpoints = [e.strip() for item in values["endpoints"] for e in item.split(",") if e.strip()]
    set_timeout = "command_timeout" in given or bool(os.environ.get("ETCDCTL_COMMAND_TIMEOUT"))
    tls = TlsSettings(values["cert_file"], values["key_file"], values["cacert_file"],
                      values["insecure_transport"], values["insecure_skip_tls_verify"])  # fmt: skip
    return Globals(endpoints, values["write_out"], values["dial_timeout"],
                   values["command_timeout"], set_timeout, values["hex"], values["debug"], tls,
                   UserFlags(values["user"], values["password"]))  # fmt: skip


def debug_wanted(ctx: click.Context | None) -> bool:
    if ctx is not None and ctx.meta.get(_GIVEN, {}).get("debug"):
        return True
    return os.environ.get("ETCDCTL_DEBUG", "") in ("1", "t", "T", "true", "TRUE", "True")


# -- commands and groups ----------------------------------------------------------------------


def _split_params(
    ctx: click.Context, params: Sequence[click.Parameter]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    own: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    for param in params:
        if not isinstance(param, click.Option):
            continue  # arguments are named in the usage line and the description
        record = param.get_help_record(ctx)
        if record is not None:
            (shared if param.name in _GLOBAL_NAMES else own).append(record)
    return own, shared


def _write_option_sections(
    ctx: click.Context, formatter: click.HelpFormatter, params: list[click.Parameter]
) -> None:
    """The command's own options, then the global ones, as etcdctl's help lists them."""
    own, shared = _split_params(ctx, params)
    if own:
        with formatter.section("Options"):
            formatter.write_dl(own)
    if shared:
        with formatter.section("Global options"):
            formatter.write_dl(shared)


class CtlCommand(click.Command):
    """A leaf command that also takes the global options, and words its argument errors as
    etcdctl does (``args_error``, exit code 128)."""

    def __init__(self, *args: Any, args_error: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("help_option_names", ["-h", "--help"])
        super().__init__(*args, **kwargs)
        self.args_error = args_error
        self.params.extend(_global_params())

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_option_sections(ctx, formatter, self.get_params(ctx))


class CtlGroup(click.Group):
    """A group of commands: global options here too, aliases (``set`` for ``put``), unique
    prefixes (``memb`` for ``member``, as etcdctl allows), help when called bare."""

    command_class = CtlCommand

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("help_option_names", ["-h", "--help"])
        super().__init__(*args, **kwargs)
        self.aliases = dict(aliases or {})
        self.params.extend(_global_params())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = self.aliases.get(cmd_name, cmd_name)
        if name in self.commands:
            return self.commands[name]
        matches = [n for n in self.commands if n.startswith(cmd_name)]
        return self.commands[matches[0]] if len(matches) == 1 else None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        cmd = self.get_command(ctx, name)
        if cmd is None:
            if name.startswith("-"):
                self.parse_args(ctx, args)  # an option after the command's options: its error
            where = ctx.command_path.split(" ", 1)[-1] if ctx.parent else PROG
            message = f'unknown command "{name}" for "{where}"'
            close = difflib.get_close_matches(name, [*self.commands, *self.aliases], n=1)
            if close:
                message += " (did you mean " + " or ".join(f'"{c}"' for c in close) + "?)"
            raise CtlUsage(message, EXIT_ERROR)
        return cmd.name, cmd, args[1:]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands[name]
            if cmd.hidden:
                continue
            also = [a for a, target in self.aliases.items() if target == name]
            label = f"{name} ({', '.join(also)})" if also else name
            rows.append((label, cmd.get_short_help_str(limit=70)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.format_commands(ctx, formatter)
        _write_option_sections(ctx, formatter, self.get_params(ctx))


# -- usage errors in etcdctl's words ----------------------------------------------------------


def error_of_usage(err: click.ClickException) -> CtlError:
    """A click usage error as etcdctl words it: unknown and malformed flags exit 1 (as
    cobra's flag parsing does), wrong positional arguments exit 128 (ExitBadArgs)."""
    if isinstance(err, CtlUsage):
        return CtlError(err.message, err.code)
    if isinstance(err, click.NoSuchOption):
        text = f"unknown flag: {err.option_name}"
        if err.possibilities:
            text += f" (did you mean {err.possibilities[0]}?)"
        return CtlError(text, EXIT_ERROR)
    if isinstance(err, click.BadOptionUsage):
        if "requires" in err.message:
            return CtlError(f"flag needs an argument: {err.option_name}", EXIT_ERROR)
        return CtlError(err.format_message(), EXIT_ERROR)
    command = err.ctx.command if isinstance(err, click.UsageError) and err.ctx else None
    if isinstance(err, click.BadParameter) and isinstance(err.param, click.Option):
        return CtlError(f'invalid argument for "{_flag_name(err.param)}" flag: {err.message}',
                        EXIT_ERROR)  # fmt: skip
    if isinstance(command, CtlCommand) and command.args_error:
        return CtlError(command.args_error, EXIT_BAD_ARGS)
    return CtlError(err.format_message(), EXIT_BAD_ARGS)


def hex_arg(text: str, what: str, *, signed: bool = True) -> int:
    """A lease or member ID argument in hex; etcdctl's words when it is not one."""
    try:
        return parse_hex_id(text, signed=signed)
    except ValueError as err:
        raise CtlError(f"bad {what} arg ({err}), expecting ID in Hex", EXIT_BAD_ARGS) from None


def run_with(
    ctx: click.Context,
    operation: Callable[[Client, Output], None],
    *,
    value_only: bool = False,
) -> None:
    """Runs ``operation`` with a client and an output made from the global options."""
    settings = globals_of(ctx)
    client = settings.client()
    try:
        operation(client, settings.output(value_only=value_only))
    finally:
        client.close()


# -- Go's bool flags --------------------------------------------------------------------------


def _bool_flag_names(command: click.Command) -> tuple[set[str], set[str]]:
    """(plain flags, flags that default to true) of ``command`` and its subcommands."""
    plain: set[str] = set()
    default_true: set[str] = set()
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        longs = {o for o in param.opts if o.startswith("--")}
        if param.is_flag and not param.count:
            plain |= longs
        elif isinstance(param.type, GoBool):
            default_true |= longs
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            more_plain, more_true = _bool_flag_names(sub)
            plain |= more_plain
            default_true |= more_true
    return plain, default_true


def go_bool_args(root: click.Command, args: Sequence[str]) -> list[str]:
    """Arguments with Go's bool flag forms made click's: ``--prefix=true`` is ``--prefix``,
    ``--prefix=false`` is nothing, ``--insecure-transport`` alone is ``=true`` (it takes an
    optional value, so it must not swallow the next argument)."""
    plain, default_true = _bool_flag_names(root)
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            out.extend(args[index:])
            break
        name, eq, value = arg.partition("=")
        if name in default_true and not eq:
            out.append(f"{name}=true")
        elif name in plain and eq:
            try:
                if _go_bool(value):
                    out.append(name)
            except ValueError as err:
                raise CtlUsage(f'invalid argument "{value}" for "{name}" flag: {err}',
                               EXIT_ERROR) from None  # fmt: skip
        else:
            out.append(arg)
    return out


def bool_option(*decls: str, default: bool, help: str) -> Callable[[Any], Any]:
    """A command's Go bool flag: a plain flag when false by default; one that also takes
    ``=false`` when true by default (``user add --interactive=false``)."""
    if not default:
        return click.option(*decls, is_flag=True, help=help)
    return click.option(*decls, type=GoBool(), is_flag=False, flag_value="true", default=True,
                        show_default=True, metavar="BOOL", help=help)  # fmt: skip
