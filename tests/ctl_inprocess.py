"""etcdpyctl run inside the test process, through its console script's ``main``.

A transcript test compares what etcdpyctl prints with what etcdctl prints, command by command;
starting an interpreter for each command costs about 0.5 s and proves nothing about the output.
``run_ctl`` calls ``etcdpy.cli.ctl.main`` with its own argv, stdin, stdout, stderr and
environment and returns what ``subprocess.run(..., text=True)`` would. The runs that are about
the console script itself (a value on a pipe, the environment, a terminal, a keep-alive in
tests/integration/test_ctl_cli.py; the environment run of
tests/integration/test_ctl_auth_against_etcd.py) still start real processes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager


class _Stream(io.TextIOWrapper):
    """A text stream over bytes, as a pipe is (``.buffer`` for binary output, not a tty)."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", newline="")

    def text(self) -> str:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        # as subprocess.run(text=True) reads a pipe: universal newlines
        text = raw.getvalue().decode("utf-8", errors="replace")
        return text.replace("\r\n", "\n").replace("\r", "\n")


@contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_ctl(
    args: Sequence[str], *, stdin: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """etcdpyctl ``args`` in this process; ``env`` replaces the environment while it runs.
    It owns sys.stdin/stdout/stderr meanwhile: one call at a time (a command that waits, a
    watch, belongs in a real process when another call must run beside it)."""
    from etcdpy.cli.ctl import main

    streams = (sys.stdin, sys.stdout, sys.stderr)
    stdin_stream = _Stream(stdin.encode("utf-8"))
    out, err = _Stream(), _Stream()
    sys.stdin, sys.stdout, sys.stderr = stdin_stream, out, err
    try:
        with _environment(env):
            code = main(list(args))
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
    return subprocess.CompletedProcess(["etcdpyctl", *args], code, out.text(), err.text())
