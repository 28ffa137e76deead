"""Values written as etcd's Go tools write them (etcdpy.gofmt), and their users."""

from __future__ import annotations

import errno

import pytest

from etcdpy.gofmt import go_bytes, go_path_error, humanize_bytes
from etcdpy.tools import snapshot


# Sizes as Debian's etcdctl 3.4.23 printed them (DB SIZE, snapshot status TOTAL SIZE).
@pytest.mark.parametrize(
    ("size", "text"), [(20512, "20 kB"), (32768, "33 kB"), (1232896, "1.2 MB")]
)
def test_humanize_bytes_as_etcdctl_prints_them(size: int, text: str) -> None:
    assert humanize_bytes(size) == text


def test_snapshot_status_total_size_uses_etcdctls_rules(capsys: pytest.CaptureFixture[str]) -> None:
    st = {"hash": 0xF12DCFC4, "revision": 7, "totalKey": 10, "totalSize": 32768}
    snapshot._print_status(st, "simple")
    assert capsys.readouterr().out == "f12dcfc4, 7, 10, 33 kB\n"


def test_go_bytes_is_percent_v_of_a_byte_slice() -> None:
    assert go_bytes(bytes([55, 159, 0])) == "[55 159 0]"
    assert go_bytes(b"") == "[]"


def test_go_path_error_reads_like_os_path_error() -> None:
    err = FileNotFoundError(errno.ENOENT, "No such file or directory", "nope.db")
    assert go_path_error("open", err) == "open nope.db: no such file or directory"
    assert go_path_error("", err) == "nope.db: no such file or directory"
