"""``etcdpyctl``: a small etcdctl for machines without one.

    etcdpyctl [--endpoints=127.0.0.1:2379] [-w simple|json] COMMAND
      put KEY VALUE [--prev-kv] [--lease=ID]
      get KEY [RANGE_END] [--prefix|--from-key] [--rev=N] [--limit=N] [--keys-only]
          [--print-value-only] [--count-only]
      del KEY [RANGE_END] [--prefix|--from-key] [--prev-kv]
      compaction REVISION [--physical]
      member list
      endpoint status | hashkv | health
      snapshot save FILE | restore FILE [--data-dir --name --initial-cluster] | status FILE
      defrag; alarm list | disarm; lease grant | revoke | timetolive | list; watch KEY
      set KEY VALUE (the seed's word for put)

It speaks the etcd v3 gRPC API, so it works against etcd as well as etcdpy, and prints what
etcdctl 3.4 prints (``-w simple`` lines, ``-w json`` objects with the proto field names, bytes
in base64, zero values left out). Errors go to stderr as ``Error: <message>``, exit code 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

__all__ = ["humanize_bytes", "main", "message_to_json", "prefix_range_end"]

EXIT_ERROR = 1
EXIT_BAD_ARGS = 128  # etcdctl's code for wrong arguments


class CtlError(Exception):
    """Printed as ``Error: <message>``; the process exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- output helpers ---------------------------------------------------------------------------


def message_to_json(message: Message) -> dict[str, Any]:
    """A proto message as etcdctl's ``-w json`` shows it: proto field names, bytes in base64,
    fields with their zero value omitted, 64-bit integers as JSON numbers."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.is_repeated:
            out[field.name] = [_json_value(field, item) for item in value]
        else:
            out[field.name] = _json_value(field, value)
    return out


def _json_value(field: Any, value: Any) -> Any:
    if field.type == field.TYPE_MESSAGE:
        return message_to_json(value)
    if field.type == field.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def humanize_bytes(size: int) -> str:
    """Sizes as etcdctl prints them (go-humanize ``Bytes``: SI units, ``20 kB``)."""
    if size < 10:
        return f"{size} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    exponent = min(math.floor(math.log(size, 1000)), len(units) - 1)
    value = math.floor(size / 1000**exponent * 10 + 0.5) / 10
    return f"{value:.1f} {units[exponent]}" if value < 10 else f"{value:.0f} {units[exponent]}"


def prefix_range_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's rule)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"  # all 0xff: no upper bound


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


@dataclass
class Output:
    """Writes results in the chosen format."""

    fmt: str
    print_value_only: bool = False

    def line(self, text: str) -> None:
        sys.stdout.write(text + "\n")

    def raw(self, text: str) -> None:
        sys.stdout.buffer.write(text.encode("utf-8", errors="surrogateescape") + b"\n")

    def json(self, value: Any) -> None:
        self.line(json.dumps(value, separators=(",", ":")))

    def rows(self, headers: list[str], rows: list[list[str]]) -> None:
        """``-w simple``: one comma-separated line per row; ``-w table``: a rich table."""
        if self.fmt == "table":
            from etcdpy.cli.ctl_ops import print_table

            print_table(headers, rows)
            return
        for row in rows:
            self.line(", ".join(row))

    def kv(self, kv: Any) -> None:
        if not self.print_value_only:
            self.raw(_text(kv.key))
        self.raw(_text(kv.value))


# -- the connection ---------------------------------------------------------------------------


def _target(endpoint: str) -> str:
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):
            if scheme == "https://":
                raise CtlError("https endpoints are not supported yet by etcdpyctl")
            return endpoint[len(scheme) :]
    return endpoint


@dataclass
class Client:
    """One channel to the first endpoint that answers."""

    endpoints: list[str]
    dial_timeout: float
    command_timeout: float
    _channel: grpc.Channel | None = None
    endpoint: str = ""

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel, self.endpoint = self._dial_any()
        return self._channel

    def _dial_any(self) -> tuple[grpc.Channel, str]:
        for endpoint in self.endpoints:
            channel = dial(endpoint, self.dial_timeout)
            if channel is not None:
                return channel, endpoint
        raise CtlError("context deadline exceeded")

    def call(self, method: Callable[..., Any], request: Message) -> Any:
        try:
            return method(request, timeout=self.command_timeout)
        except grpc.RpcError as err:
            raise CtlError(_rpc_message(err)) from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


def dial(endpoint: str, timeout: float) -> grpc.Channel | None:
    """A channel to ``endpoint`` once connected, or None after ``timeout`` seconds."""
    channel = grpc.insecure_channel(_target(endpoint))
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        return None
    return channel


def _rpc_message(err: grpc.RpcError) -> str:
    details = err.details() if hasattr(err, "details") else None
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
        return "context deadline exceeded"
    return str(details or err)


# -- commands ---------------------------------------------------------------------------------


def _key_range(args: argparse.Namespace) -> tuple[bytes, bytes]:
    key = os.fsencode(args.key)
    if args.range_end is not None:
        if args.prefix or args.from_key:
            raise CtlError("too many arguments, only accept one argument when `--prefix` "
                           "or `--from-key` is set", EXIT_BAD_ARGS)  # fmt: skip
        return key, os.fsencode(args.range_end)
    if args.prefix and args.from_key:
        raise CtlError("`--prefix` and `--from-key` cannot be set at the same time", EXIT_BAD_ARGS)
    if args.prefix:
        return key, prefix_range_end(key) if key else b"\x00"
    if args.from_key:
        return key or b"\x00", b"\x00"
    return key, b""


def cmd_put(client: Client, args: argparse.Namespace, out: Output) -> None:
    kv = rpc_pb2_grpc.KVStub(client.channel())
    request = rpc_pb2.PutRequest(
        key=os.fsencode(args.key),
        value=os.fsencode(args.value),
        lease=args.lease,
        prev_kv=args.prev_kv,
    )
    response = client.call(kv.Put, request)
    if out.fmt == "json":
        out.json(message_to_json(response))
        return
    out.line("OK")
    if response.HasField("prev_kv"):
        out.kv(response.prev_kv)


def cmd_get(client: Client, args: argparse.Namespace, out: Output) -> None:
    key, range_end = _key_range(args)
    kv = rpc_pb2_grpc.KVStub(client.channel())
    request = rpc_pb2.RangeRequest(
        key=key,
        range_end=range_end,
        revision=args.rev,
        limit=args.limit,
        keys_only=args.keys_only,
        count_only=args.count_only,
    )
    response = client.call(kv.Range, request)
    if out.fmt == "json":
        out.json(message_to_json(response))
        return
    if args.count_only:
        out.line(str(response.count))
        return
    for item in response.kvs:
        out.kv(item)


def cmd_del(client: Client, args: argparse.Namespace, out: Output) -> None:
    key, range_end = _key_range(args)
    kv = rpc_pb2_grpc.KVStub(client.channel())
    request = rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end, prev_kv=args.prev_kv)
    response = client.call(kv.DeleteRange, request)
    if out.fmt == "json":
        out.json(message_to_json(response))
        return
    out.line(str(response.deleted))
    for item in response.prev_kvs:
        out.kv(item)


def cmd_compaction(client: Client, args: argparse.Namespace, out: Output) -> None:
    try:
        revision = int(args.revision)
    except ValueError:
        raise CtlError(f'strconv.ParseInt: parsing "{args.revision}": invalid syntax') from None
    kv = rpc_pb2_grpc.KVStub(client.channel())
    request = rpc_pb2.CompactionRequest(revision=revision, physical=args.physical)
    client.call(kv.Compact, request)
    out.line(f"compacted revision {revision}")  # etcdctl prints this for every format


def cmd_member_list(client: Client, args: argparse.Namespace, out: Output) -> None:
    cluster = rpc_pb2_grpc.ClusterStub(client.channel())
    response = client.call(cluster.MemberList, rpc_pb2.MemberListRequest())
    if out.fmt == "json":
        out.json(message_to_json(response))
        return
    rows = [
        [
            f"{m.ID:x}",
            "started" if m.name else "unstarted",
            m.name,
            ",".join(m.peerURLs),
            ",".join(m.clientURLs),
            "true" if m.isLearner else "false",
        ]
        for m in response.members
    ]
    headers = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
    out.rows(headers, rows)


def cmd_endpoint_status(client: Client, args: argparse.Namespace, out: Output) -> None:
    statuses: list[tuple[str, Any]] = []
    failed = False
    for endpoint in client.endpoints:
        channel = dial(endpoint, client.dial_timeout)
        if channel is None:
            failed = True
            sys.stderr.write(f"Failed to get the status of endpoint {endpoint} "
                             "(context deadline exceeded)\n")  # fmt: skip
            continue
        try:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            statuses.append((endpoint, client.call(stub.Status, rpc_pb2.StatusRequest())))
        except CtlError as err:
            failed = True
            sys.stderr.write(f"Failed to get the status of endpoint {endpoint} ({err})\n")
        finally:
            channel.close()
    if out.fmt == "json":
        out.json([{"Endpoint": ep, "Status": message_to_json(st)} for ep, st in statuses])
    else:
        rows = [
            [
                endpoint,
                f"{st.header.member_id:x}",
                st.version,
                humanize_bytes(st.dbSize),
                "true" if st.leader == st.header.member_id else "false",
                "true" if st.isLearner else "false",
                str(st.raftTerm),
                str(st.raftIndex),
                str(st.raftAppliedIndex),
                ", ".join(st.errors),
            ]
            for endpoint, st in statuses
        ]
        headers = ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
                   "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"]  # fmt: skip
        out.rows(headers, rows)
    if failed:
        raise CtlError("some endpoints did not answer")


# -- the command line -------------------------------------------------------------------------


def _duration(text: str) -> float:
    from etcdpy.config import ConfigError, parse_duration

    try:
        return parse_duration(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etcdpyctl", description="A small etcdctl for etcdpy and etcd (v3 API)."
    )
    _global_options(parser, with_defaults=True)
    # As with etcdctl, the global options may also come after the command.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, with_defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # `set` is the seed's v2-style word for put.
    put = commands.add_parser("put", aliases=["set"], help="put a key", parents=[common])
    put.add_argument("key")
    put.add_argument("value")
    put.add_argument("--prev-kv", action="store_true", help="print the previous key-value")
    put.add_argument("--lease", type=lambda s: int(s, 16), default=0, help="lease ID in hex")
    put.set_defaults(run=cmd_put)

    get = commands.add_parser("get", help="get a key or a range", parents=[common])
    _range_arguments(get)
    get.add_argument("--rev", type=int, default=0, help="read at this revision")
    get.add_argument("--limit", type=int, default=0)
    get.add_argument("--keys-only", action="store_true")
    get.add_argument("--count-only", action="store_true")
    get.add_argument("--print-value-only", action="store_true")
    get.set_defaults(run=cmd_get)

    delete = commands.add_parser("del", help="delete a key or a range", parents=[common])
    _range_arguments(delete)
    delete.add_argument("--prev-kv", action="store_true")
    delete.set_defaults(run=cmd_del)

    compaction = commands.add_parser("compaction", help="compact the history", parents=[common])
    compaction.add_argument("revision")
    compaction.add_argument("--physical", action="store_true")
    compaction.set_defaults(run=cmd_compaction)

    member = commands.add_parser("member", help="member commands")
    member_commands = member.add_subparsers(dest="member_command", required=True)
    member_commands.add_parser("list", help="list the members", parents=[common]).set_defaults(
        run=cmd_member_list
    )

    endpoint = commands.add_parser("endpoint", help="endpoint commands")
    endpoint_commands = endpoint.add_subparsers(dest="endpoint_command", required=True)
    endpoint_commands.add_parser(
        "status", help="status of each endpoint", parents=[common]
    ).set_defaults(run=cmd_endpoint_status)
    # Operator commands: snapshot, defrag, alarm, lease, watch, endpoint hashkv/health.
    from etcdpy.cli import ctl_ops

    ctl_ops.add_endpoint_commands(endpoint_commands, common)
    ctl_ops.add_commands(commands, common)
    return parser


def _global_options(parser: argparse.ArgumentParser, *, with_defaults: bool) -> None:
    def default(value: object) -> object:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument(
        "--endpoints",
        default=default(os.environ.get("ETCDCTL_ENDPOINTS", "127.0.0.1:2379")),
        help="comma-separated gRPC endpoints (default 127.0.0.1:2379, or $ETCDCTL_ENDPOINTS)",
    )
    parser.add_argument(
        "-w", "--write-out", choices=("simple", "json", "table"), default=default("simple")
    )
    parser.add_argument("--dial-timeout", type=_duration, default=default(2.0), help="e.g. 2s")
    parser.add_argument("--command-timeout", type=_duration, default=default(5.0), help="e.g. 5s")


def _range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key")
    parser.add_argument("range_end", nargs="?")
    parser.add_argument("--prefix", action="store_true")
    parser.add_argument("--from-key", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``etcdpyctl`` console script; returns the exit code."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    out = Output(args.write_out, getattr(args, "print_value_only", False))
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    client = Client(endpoints, args.dial_timeout, args.command_timeout)
    try:
        args.run(client, args, out)
    except CtlError as err:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {err}\n")
        return err.code
    finally:
        client.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
