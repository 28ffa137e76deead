"""How etcdpyctl writes results: etcdctl 3.4's ``simple``, ``json`` and ``table`` formats.

``simple`` and ``json`` are byte for byte what etcdctl prints, so scripts written for one
parse the other. ``table`` is drawn by rich on a terminal; off a terminal it is etcdctl's
ASCII table (tablewriter's layout), with every value whole on one line. Progress bars and
spinners go to stderr, and only when stderr is a terminal.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from etcdpy.cli.ctl_client import EXIT_BAD_FEATURE, CtlError
from etcdpy.gofmt import go_duration, humanize_bytes

__all__ = [
    "FORMATS",
    "Output",
    "byte_progress",
    "go_duration",
    "humanize_bytes",
    "message_to_json",
    "plain_table",
    "spinner",
]

FORMATS = ("simple", "json", "table")


# -- formatting helpers -----------------------------------------------------------------------


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


def hex_escaped(data: bytes) -> bytes:
    """etcdctl's ``--hex``: every byte as ``\\xNN``."""
    return "".join(f"\\x{b:02x}" for b in data).encode("ascii")


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """etcdctl's ``-w table`` text (tablewriter): headers upper-case and centred, cells
    right-aligned, ``+---+`` rules above and below the header and at the end."""
    heads = [h.upper() for h in headers]
    widths = [len(h) for h in heads]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        gap = width - len(text)
        return " " * (gap // 2) + text + " " * (gap - gap // 2)

    lines = [
        rule,
        "| " + " | ".join(centred(h, w) for h, w in zip(heads, widths, strict=True)) + " |",
        rule,
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    lines.append(rule)
    return "\n".join(lines) + "\n"


# -- the writer -------------------------------------------------------------------------------


@dataclass
class Output:
    """Writes one command's results to stdout in the chosen format."""

    fmt: str = "simple"
    hex_bytes: bool = False
    value_only: bool = False

    @property
    def is_json(self) -> bool:
        return self.fmt == "json"

    @property
    def is_table(self) -> bool:
        return self.fmt == "table"

    def write(self, data: bytes) -> None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def line(self, text: str) -> None:
        self.write(text.encode("utf-8", errors="surrogateescape") + b"\n")

    def json(self, value: Any) -> None:
        # Go's encoding/json: compact, UTF-8 kept as it is.
        self.line(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def bytes_line(self, data: bytes) -> None:
        self.write((hex_escaped(data) if self.hex_bytes else data) + b"\n")

    def kv(self, kv: Any) -> None:
        """etcdctl's printKV: the key line (unless --print-value-only), then the value line."""
        if not self.value_only:
            self.bytes_line(kv.key)
        self.bytes_line(kv.value)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if sys.stdout.isatty():
            _rich_table(headers, rows)
        else:
            self.write(plain_table(headers, rows).encode("utf-8", errors="surrogateescape"))

    def rows(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """``-w simple``: one comma-separated line per row; ``-w table``: a table."""
        if self.is_table:
            self.table(headers, rows)
            return
        for row in rows:
            self.line(", ".join(row))

    def no_table(self) -> None:
        """etcdctl's answer for a command that has no table form."""
        if self.is_table:
            raise CtlError("table not supported as output format", EXIT_BAD_FEATURE)


def _rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.ROUNDED, header_style="bold")
    for header in headers:
        table.add_column(header.upper(), justify="right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


# -- progress on stderr -----------------------------------------------------------------------


def _progress_wanted() -> bool:
    return sys.stderr.isatty()


def byte_progress(label: str) -> Progress:
    """A bar in bytes (snapshot save and restore); does nothing off a terminal."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not _progress_wanted(),
        transient=True,
    )


def count_progress(label: str) -> Progress:
    """A bar over a count of steps (defrag of several members); spinner for the current one."""
    return Progress(
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not _progress_wanted(),
        transient=True,
    )


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner with the elapsed time while one call with no progress of its own runs."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn(text),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not _progress_wanted(),
        transient=True,
    )
    with progress:
        progress.add_task(text, total=None)
        yield
