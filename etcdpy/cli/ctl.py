"""``etcdpyctl``: etcdctl's commands, flags and output for etcdpy (and etcd), built on click.

    etcdpyctl [global options] COMMAND [options] ARGS...   (global options may also follow)

It speaks the etcd v3 gRPC API, so it works against etcd as well as etcdpy, and prints what
etcdctl 3.4 prints (``-w simple`` lines, ``-w json`` objects with the proto field names, bytes
in base64, zero values left out; ``-w table`` drawn by rich on a terminal). Errors are one
line on stderr, ``Error: <message>``, with etcdctl's exit codes; never a traceback unless
``--debug`` asks for one.

The operations live in ctl_kv (key space), ctl_lease and ctl_ops (cluster, maintenance); the
cluster and maintenance commands in ctl_admin; the click machinery (global options, env,
aliases, error wording) in ctl_click. This module is the root, the key-space commands and
the entry point.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click
import grpc

from etcdpy.cli import ctl_kv
from etcdpy.cli.ctl_admin import ADMIN_COMMANDS
from etcdpy.cli.ctl_auth_commands import AUTH_COMMANDS
from etcdpy.cli.ctl_click import (
    CtlCommand,
    CtlGroup,
    Int64,
    debug_wanted,
    error_of_usage,
    go_bool_args,
    run_with,
)
from etcdpy.cli.ctl_client import EXIT_BAD_ARGS, EXIT_ERROR, CtlError
from etcdpy.cli.ctl_kv import prefix_range_end
from etcdpy.cli.ctl_output import humanize_bytes, message_to_json
from etcdpy.cli.ctl_parse import parse_go_int, parse_hex_id

__all__ = ["cli", "humanize_bytes", "main", "message_to_json", "prefix_range_end"]

VERSION = "0.1.0"
API_VERSION = "3.4"

ROOT_HELP = """A command line client for etcdpy and etcd (the etcd v3 gRPC API).

Commands, flags and output follow etcdctl 3.4. Global options may come before or after
the command; each also reads ETCDCTL_<NAME> from the environment (ETCDCTL_ENDPOINTS,
ETCDCTL_DIAL_TIMEOUT, ETCDCTL_COMMAND_TIMEOUT, ETCDCTL_WRITE_OUT, ETCDCTL_HEX,
ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_INSECURE_TRANSPORT,
ETCDCTL_INSECURE_SKIP_TLS_VERIFY, ETCDCTL_USER, ETCDCTL_PASSWORD); a flag given on the
command line wins over the environment.

\b
Examples:
  etcdpyctl put key1 value1          (also: etcdpyctl set key1 value1)
  etcdpyctl get --prefix /registry/ --keys-only
  etcdpyctl --endpoints 127.0.0.1:2379,127.0.0.1:22379 endpoint status -w table
  etcdpyctl snapshot save backup.db
  etcdpyctl --endpoints https://10.0.0.1:2379 --cacert ca.pem --cert me.pem --key me-key.pem \\
      --user root user list
"""


def _key(text: str) -> bytes:
    # Arguments arrive as str decoded with surrogateescape: back to the bytes typed.
    return os.fsencode(text)


@click.group(cls=CtlGroup, help=ROOT_HELP, aliases={"set": "put"})
def cli() -> None:
    pass


# -- key space --------------------------------------------------------------------------------

_KEY_ARGS = "one argument as key and an optional argument as range_end"


@cli.command(cls=CtlCommand, args_error=f"get command needs {_KEY_ARGS}",
             short_help="Gets the key or a range of keys.")  # fmt: skip
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--consistency", default="l", show_default=True,
              help="Linearizable (l) or Serializable (s).")  # fmt: skip
@click.option("--order", default="", help="Order of results: ASCEND or DESCEND.")
@click.option("--sort-by", default="", help="Sort target: CREATE, KEY, MODIFY, VALUE or VERSION.")
@click.option("--limit", type=Int64(), default=0, help="Maximum number of results.")
@click.option("--prefix", is_flag=True, help="Get keys with matching prefix.")
@click.option("--from-key", is_flag=True, help="Get keys >= the given key (byte order).")
@click.option("--rev", type=Int64(), default=0, help="Read at this revision.")
@click.option("--keys-only", is_flag=True, help="Get only the keys.")
@click.option("--count-only", is_flag=True, help="Get only the count of keys.")
@click.option("--print-value-only", is_flag=True, help="Only write values (simple format).")
@click.pass_context
def get(ctx: click.Context, key: str, range_end: str | None, consistency: str, order: str,
        sort_by: str, limit: int, prefix: bool, from_key: bool, rev: int, keys_only: bool,
        count_only: bool, print_value_only: bool) -> None:  # fmt: skip
    """Gets the key KEY, or the keys in [KEY, RANGE_END).

    With --prefix, every key that starts with KEY; with --from-key, every key >= KEY.
    An empty KEY with either means every key. The simple format writes each key on one
    line and its value on the next.
    """
    if consistency not in ("l", "s"):
        raise CtlError(f'unknown consistency flag "{consistency}"', 4)
    end = None if range_end is None else _key(range_end)
    span = ctl_kv.key_range(_key(key), end, prefix=prefix, from_key=from_key)
    run_with(
        ctx,
        lambda client, out: ctl_kv.get(
            client, out, span, revision=rev, limit=limit, keys_only=keys_only,
            count_only=count_only, serializable=consistency == "s", sort_order=order,
            sort_target=sort_by,
        ),
        value_only=print_value_only,
    )  # fmt: skip


_PUT_ARGS = "put command needs 1 argument and input from stdin or 2 arguments"


@cli.command(cls=CtlCommand, args_error=_PUT_ARGS,
             short_help="Puts the given key into the store.")  # fmt: skip
@click.argument("key")
@click.argument("value", required=False)
@click.option("--lease", default="0", help="Lease ID (in hexadecimal) to attach to the key.")
@click.option("--prev-kv", is_flag=True, help="Print the previous key-value pair.")
@click.option("--ignore-value", is_flag=True, help="Update the key using its current value.")
@click.option("--ignore-lease", is_flag=True, help="Update the key using its current lease.")
@click.pass_context
def put(ctx: click.Context, key: str, value: str | None, lease: str, prev_kv: bool,
        ignore_value: bool, ignore_lease: bool) -> None:  # fmt: skip
    """Puts KEY with VALUE into the store (``set`` is another name for it).

    Without VALUE (and without --ignore-value) the value is read from standard input:
    `cat file | etcdpyctl put KEY`. A VALUE that begins with '-' goes after '--':
    `etcdpyctl put KEY -- -value`.
    """
    if ignore_value and value is not None:
        raise CtlError("put command needs only 1 argument when 'ignore-value' is set",
                       EXIT_BAD_ARGS)  # fmt: skip
    data = b""
    if not ignore_value:
        data = _key(value) if value is not None else _read_stdin()
    try:
        lease_id = parse_hex_id(lease)
    except ValueError as err:
        raise CtlError(f"bad lease ID ({err}), expecting ID in Hex", EXIT_BAD_ARGS) from None
    run_with(
        ctx,
        lambda client, out: ctl_kv.put(
            client, out, _key(key), data, lease=lease_id, prev_kv=prev_kv,
            ignore_value=ignore_value, ignore_lease=ignore_lease,
        ),
    )  # fmt: skip


def _read_stdin() -> bytes:
    if sys.stdin is None or sys.stdin.isatty():
        raise CtlError(_PUT_ARGS, EXIT_BAD_ARGS)
    data = sys.stdin.buffer.read()
    if not data:
        raise CtlError(_PUT_ARGS, EXIT_BAD_ARGS)
    return data


@cli.command("del", cls=CtlCommand, args_error=f"del command needs {_KEY_ARGS}",
             short_help="Removes the key or range of keys [key, range_end).")  # fmt: skip
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Delete keys with matching prefix.")
@click.option("--prev-kv", is_flag=True, help="Print the deleted key-value pairs.")
@click.option("--from-key", is_flag=True, help="Delete keys >= the given key (byte order).")
@click.pass_context
def delete(ctx: click.Context, key: str, range_end: str | None, prefix: bool, prev_kv: bool,
           from_key: bool) -> None:  # fmt: skip
    """Removes KEY, or the keys in [KEY, RANGE_END); prints how many were deleted."""
    end = None if range_end is None else _key(range_end)
    span = ctl_kv.key_range(_key(key), end, prefix=prefix, from_key=from_key)
    run_with(ctx, lambda client, out: ctl_kv.delete(client, out, span, prev_kv=prev_kv))


@cli.command(cls=CtlCommand, args_error="compaction command needs 1 argument",
             short_help="Compacts the event history.")  # fmt: skip
@click.argument("revision")
@click.option("--physical", is_flag=True,
              help="Wait for compaction to physically remove all old revisions.")  # fmt: skip
@click.pass_context
def compaction(ctx: click.Context, revision: str, physical: bool) -> None:
    """Compacts the event history up to REVISION: older revisions can no longer be read."""
    try:
        rev = parse_go_int(revision)
    except ValueError as err:
        raise CtlError(str(err)) from None
    run_with(ctx, lambda client, out: ctl_kv.compaction(client, out, rev, physical=physical))


@cli.command(cls=CtlCommand, args_error="bad number of arguments",
             short_help="Watches events on keys or prefixes.")  # fmt: skip
@click.argument("key", required=False)
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Watch on a prefix.")
@click.option("--from-key", is_flag=True, help="Watch every key >= the given key.")
@click.option("--rev", type=Int64(), default=0, help="Revision to start watching from.")
@click.option("--prev-kv", is_flag=True, help="Print the previous key-value pair of each event.")
@click.option("--once", is_flag=True, help="Exit after the first events.")
@click.pass_context
def watch(ctx: click.Context, key: str | None, range_end: str | None, prefix: bool,
          from_key: bool, rev: int, prev_kv: bool, once: bool) -> None:  # fmt: skip
    """Prints the events on KEY (or [KEY, RANGE_END), or a prefix) until interrupted.

    KEY and RANGE_END may come from ETCDCTL_WATCH_KEY and ETCDCTL_WATCH_RANGE_END.
    Each event is written as its type (PUT or DELETE), then the key and value lines.
    """
    env_key = os.environ.get("ETCDCTL_WATCH_KEY", "")
    env_end = os.environ.get("ETCDCTL_WATCH_RANGE_END", "")
    if not env_key and env_end:
        raise CtlError(f'ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END="{env_end}"',
                       EXIT_BAD_ARGS)  # fmt: skip
    if env_key:
        if key is not None:
            raise CtlError("bad number of arguments (found conflicting environment key)",
                           EXIT_BAD_ARGS)  # fmt: skip
        key, range_end = env_key, env_end or None
    if key is None:
        raise CtlError("bad number of arguments", EXIT_BAD_ARGS)
    if range_end is not None and prefix:
        raise CtlError("`range_end` and `--prefix` are mutually exclusive", EXIT_BAD_ARGS)
    end = None if range_end is None else _key(range_end)
    span = ctl_kv.key_range(_key(key), end, prefix=prefix, from_key=from_key)
    run_with(ctx, lambda c, out: ctl_kv.watch(c, out, span, revision=rev, prev_kv=prev_kv,
                                              once=once))  # fmt: skip


@cli.command(cls=CtlCommand, short_help="Prints the version of etcdpyctl.")
def version() -> None:
    """Prints the version of etcdpyctl and of the API it speaks."""
    click.echo(f"etcdpyctl version: {VERSION}\nAPI version: {API_VERSION}")


for _command in (*ADMIN_COMMANDS, *AUTH_COMMANDS):
    cli.add_command(_command)


# -- the entry point --------------------------------------------------------------------------


def _report(message: str) -> None:
    """``Error: <message>`` on stderr (in red on a terminal)."""
    sys.stdout.flush()
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False).print(f"[bold red]Error:[/] {escape(message)}")
    else:
        sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``etcdpyctl`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    ctx: click.Context | None = None
    try:
        args = go_bool_args(cli, args)
        with cli.make_context("etcdpyctl", args) as ctx:
            cli.invoke(ctx)
        return 0
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        failure = error_of_usage(err)
        _report(failure.args[0])
        return failure.code
    except CtlError as err:
        if err.args[0]:
            _report(err.args[0])
        return err.code
    except grpc.RpcError as err:
        from etcdpy.cli.ctl_client import rpc_message

        _report(rpc_message(err))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say to it.
        sys.stderr.close()
        return EXIT_ERROR
    except Exception as err:  # a bug: one line, the traceback only when asked for
        if debug_wanted(ctx):
            traceback.print_exc()
        _report(f"{type(err).__name__}: {err}")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
