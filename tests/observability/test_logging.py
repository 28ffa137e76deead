"""Logging like etcd's zap logger: JSON lines with level, ts, caller, msg first."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.observability.logging import LEVELS, configure_logging, get_logger, shutdown_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    shutdown_logging()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_lines_with_zap_fields_first(tmp_path: Path) -> None:
    out = tmp_path / "etcdpy.log"
    configure_logging("info", [str(out)])
    get_logger("t", member="m1").info("ready to serve", port=2379)
    [event] = lines(out)
    assert list(event)[:4] == ["level", "ts", "caller", "msg"]
    assert event["level"] == "info"
    assert event["msg"] == "ready to serve"
    assert event["member"] == "m1" and event["port"] == 2379
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(event["ts"]))
    assert str(event["caller"]).startswith("observability/test_logging.py:")


def test_level_filter_and_etcd_level_names(tmp_path: Path) -> None:
    out = tmp_path / "etcdpy.log"
    configure_logging("warn", [str(out)])
    log = get_logger()
    log.debug("no")
    log.info("no")
    log.warning("yes")
    log.error("yes")
    assert [e["level"] for e in lines(out)] == ["warn", "error"]


def test_every_etcd_level_is_accepted() -> None:
    assert set(LEVELS) == {"debug", "info", "warn", "error", "dpanic", "panic", "fatal"}
    for level in LEVELS:
        configure_logging(level, ["stderr"], "json")
    with pytest.raises(ValueError, match="unknown level"):
        configure_logging("loud", ["stderr"])


def test_standard_logging_goes_to_the_same_output(tmp_path: Path) -> None:
    out = tmp_path / "etcdpy.log"
    configure_logging("info", [str(out)])
    logging.getLogger("grpc._server").warning("stream %d closed", 7)
    logging.getLogger("quiet").debug("not shown")
    [event] = lines(out)
    assert event["msg"] == "stream 7 closed"
    assert event["logger"] == "grpc._server"
    assert event["level"] == "warn"


def test_several_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "etcdpy.log"
    configure_logging("info", ["stdout", str(out)], "json")
    get_logger().info("both")
    assert json.loads(capsys.readouterr().out)["msg"] == "both"
    assert lines(out)[0]["msg"] == "both"


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", ["stdout"], "console")
    get_logger().info("hello", key="v")
    text = capsys.readouterr().out
    assert "hello" in text and "key=v" in text
    assert not text.startswith("{")
