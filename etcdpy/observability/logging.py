"""structlog set up to log like etcd's zap logger.

One JSON object per line with etcd's leading fields, ``level``, ``ts``, ``caller``, ``msg``, then
the event's own fields:

    {"level":"info","ts":"2026-11-25T10:18:02.160Z","caller":"server/run.py:42","msg":"..."}

When the output is a terminal the console renderer is used instead, unless a format is given.
Levels are etcd's names: debug, info, warn, error, dpanic, panic, fatal (the last three are
all "critical" to us; etcdpy never exits or panics because of a log call).
Records from the standard ``logging`` module (grpc, asyncio, ...) go to the same outputs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["LEVELS", "configure_logging", "get_logger", "open_outputs", "shutdown_logging"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "dpanic": logging.CRITICAL,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
# structlog's method names -> the names zap writes.
_LEVEL_NAMES = {"warning": "warn", "critical": "fatal", "exception": "error"}

Format = Literal["json", "console"]
Timestamps = Literal["iso8601", "epoch"]


class _Tee:
    """A file-like object that writes every line to several streams."""

    def __init__(self, streams: Sequence[TextIO]) -> None:
        self._streams = list(streams)

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


# Log files we opened; closed when logging is configured again or shut down.
_opened: list[TextIO] = []


def open_outputs(outputs: Iterable[str]) -> list[TextIO]:
    """etcd's ``--log-outputs`` names -> streams: default and stderr are stderr, stdout is
    stdout, anything else is a file opened for appending. ``systemd/journal`` is stderr."""
    streams: list[TextIO] = []
    for name in outputs:
        if name in ("default", "stderr", "systemd/journal"):
            stream = sys.stderr
        elif name == "stdout":
            stream = sys.stdout
        else:
            stream = open(name, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives on
            _opened.append(stream)
        if stream not in streams:
            streams.append(stream)
    return streams or [sys.stderr]


def _zap_level(_: WrappedLogger, method: str, event: EventDict) -> EventDict:
    event["level"] = _LEVEL_NAMES.get(method, method)
    return event


def _zap_timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    now = time.time()
    millis = int(now * 1000) % 1000
    event["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"
    return event


def _zap_epoch_timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # zap.NewProduction's encoder (etcd's gateway uses it): seconds since the epoch, a float.
    event["ts"] = time.time()
    return event


def _zap_caller(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    path = event.pop("pathname", None)
    line = event.pop("lineno", None)
    if path is not None and "caller" not in event:
        short = "/".join(str(path).replace("\\", "/").rsplit("/", 2)[-2:])
        event["caller"] = f"{short}:{line}"
    return event


def _zap_order(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # zap writes level, ts, caller and msg first; JSON keeps our insertion order.
    ordered: dict[str, Any] = {}
    for key in ("level", "ts", "caller", "msg"):
        if key in event:
            ordered[key] = event.pop(key)
    ordered.update(event)
    return ordered


class _ForwardHandler(logging.Handler):
    """Sends records of the standard logging module through structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            method = record.levelname.lower()
            logger = structlog.get_logger(record.name)
            fields: dict[str, Any] = {
                "logger": record.name,
                "caller": f"{record.module}.py:{record.lineno}",
            }
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            getattr(logger, method, logger.info)(record.getMessage(), **fields)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure_logging(
    level: str = "info",
    outputs: Sequence[str] = ("default",),
    fmt: Format | None = None,
    timestamps: Timestamps = "iso8601",
) -> None:
    """Configure structlog (and the standard logging module) for the whole process.

    ``level`` is one of etcd's level names; ``outputs`` are ``--log-outputs`` values; ``fmt``
    None picks "console" when every output is a terminal, else "json". ``timestamps`` "epoch"
    writes ``ts`` as seconds since the epoch (zap's production encoder) instead of etcd's
    server format, ISO 8601.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    levelno = LEVELS[level]
    shutdown_logging()
    streams = open_outputs(outputs)
    if fmt is None:
        fmt = "console" if all(_isatty(s) for s in streams) else "json"
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(separators=(",", ":"))
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, event_key="msg")
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _zap_level,
        _zap_epoch_timestamp if timestamps == "epoch" else _zap_timestamp,
        structlog.processors.CallsiteParameterAdder(
            [
                structlog.processors.CallsiteParameter.PATHNAME,
                structlog.processors.CallsiteParameter.LINENO,
            ],
            additional_ignores=["etcdpy.observability.logging", "logging"],
        ),
        _zap_caller,
        structlog.processors.format_exc_info,
        structlog.processors.EventRenamer("msg"),
        _zap_order,
        renderer,
    ]
    out: TextIO = streams[0] if len(streams) == 1 else _Tee(streams)  # type: ignore[assignment]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.addHandler(_ForwardHandler())
    root.setLevel(levelno)


def shutdown_logging() -> None:
    """Detach from the standard logging module, reset structlog, close our log files."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ForwardHandler):
            root.removeHandler(handler)
    structlog.reset_defaults()
    while _opened:
        _opened.pop().close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def get_logger(name: str | None = None, **fields: Any) -> Any:
    """A structlog logger, with ``fields`` bound to every event."""
    logger = structlog.get_logger(name)
    return logger.bind(**fields) if fields else logger
