"""`etcdctl watch` (Debian's etcdctl 3.4) against a real etcdpy process, as a user runs it.

Each etcdctl runs as a subprocess with a bounded lifetime and is stopped by its PID.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from etcdpy.testing.processes import MemberProcess
from tests.external_tools import Etcdctl
from tests.integration.shared_member import wiped

pytestmark = pytest.mark.integration


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    """One member for the module, emptied before each test (tests reading absolute revisions
    have one of their own)."""
    return wiped(module_etcdpy_server)


class Running:
    """A running etcdctl whose stdout and stderr lines are collected by reader threads."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.errors: list[str] = []
        err_q: queue.Queue[str] = queue.Queue()
        self._err_q = err_q
        self.threads = [
            threading.Thread(target=self._pump, args=(proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, err_q), daemon=True),
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pump(pipe: object, out: queue.Queue[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            out.put(line.rstrip("\n"))

    def wait_for(self, expected: list[str], timeout: float = 10.0) -> list[str]:
        """Collect stdout lines until ``expected`` appears as a contiguous run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _contains(self.seen, expected):
                return self.seen
            try:
                self.seen.append(self.lines.get(timeout=0.1))
            except queue.Empty:
                continue
        raise AssertionError(f"never printed {expected}; got {self.seen}, stderr {self.stderr()}")

    def stderr(self) -> list[str]:
        while not self._err_q.empty():
            self.errors.append(self._err_q.get())
        return self.errors

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


def _contains(lines: list[str], run: list[str]) -> bool:
    return any(lines[i : i + len(run)] == run for i in range(len(lines) - len(run) + 1))


@contextmanager
def etcdctl_watch(ctl: Etcdctl, *args: str, stdin: bool = False) -> Iterator[Running]:
    env = dict(os.environ, ETCDCTL_API="3")
    env.pop("ETCDCTL_ENDPOINTS", None)
    proc = subprocess.Popen(
        [ctl.binary, f"--endpoints={ctl.endpoint}", "watch", *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    running = Running(proc)
    try:
        yield running
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for t in running.threads:
            t.join(timeout=5)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _next_rev(ctl: Etcdctl) -> str:
    """The next revision: a watch from there sees every later write, however late it starts."""
    return str(int(ctl.json("get", "none")["header"]["revision"]) + 1)


def test_watch_one_key_prints_events(etcdctl: Etcdctl) -> None:
    with etcdctl_watch(etcdctl, "--rev", _next_rev(etcdctl), "key1") as w:
        etcdctl.out("put", "key1", "v1")
        etcdctl.out("put", "other", "x")
        etcdctl.out("del", "key1")
        lines = w.wait_for(["PUT", "key1", "v1", "DELETE", "key1", ""])
    assert "other" not in lines


def test_watch_prefix(etcdctl: Etcdctl) -> None:
    with etcdctl_watch(etcdctl, "--rev", _next_rev(etcdctl), "--prefix", "/registry/pods/") as w:
        etcdctl.out("put", "/registry/pods/default/a", "1")
        etcdctl.out("put", "/registry/services/x", "2")
        etcdctl.out("put", "/registry/pods/kube-system/b", "3")
        lines = w.wait_for(
            ["PUT", "/registry/pods/default/a", "1", "PUT", "/registry/pods/kube-system/b", "3"]
        )
    assert "/registry/services/x" not in lines


def test_watch_from_revision_with_prev_kv(own_etcdpy_server: MemberProcess) -> None:
    etcdctl = Etcdctl(own_etcdpy_server.endpoint)
    etcdctl.out("put", "foo", "bar")
    etcdctl.out("put", "foo", "baz")
    etcdctl.out("del", "foo")
    with etcdctl_watch(etcdctl, "--rev", "1", "--prev-kv", "foo") as w:
        created = ["PUT", "foo", "bar"]
        updated = ["PUT", "foo", "bar", "foo", "baz"]  # prev_kv first, then the new pair
        deleted = ["DELETE", "foo", "baz", "foo", ""]
        w.wait_for([*created, *updated, *deleted])
        etcdctl.out("put", "foo", "again")
        w.wait_for(["PUT", "foo", "again"])  # history, then live: no gap


def test_watch_compacted_revision_is_canceled(own_etcdpy_server: MemberProcess) -> None:
    etcdctl = Etcdctl(own_etcdpy_server.endpoint)
    for i in range(4):
        etcdctl.out("put", "k", str(i))
    etcdctl.out("compaction", "4")
    with etcdctl_watch(etcdctl, "--rev", "2", "k") as w:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not w.stderr():
            time.sleep(0.1)
        assert any(
            "watch was canceled (etcdserver: mvcc: required revision has been compacted)" in line
            for line in w.stderr()
        ), w.stderr()


def test_watch_interactive(etcdctl: Etcdctl) -> None:
    with etcdctl_watch(etcdctl, "-i", stdin=True) as w:
        w.send(f"watch --rev {_next_rev(etcdctl)} ikey")
        etcdctl.out("put", "ikey", "1")
        w.wait_for(["PUT", "ikey", "1"])
        w.send("progress")
        rev = etcdctl.json("get", "ikey")["header"]["revision"]
        w.wait_for([f"progress notify: {rev}"])


def test_progress_notify_interval(tmp_path: object) -> None:
    """--experimental-watch-progress-notify-interval drives progress_notify watchers."""
    from pathlib import Path

    from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
    from etcdpy.testing.processes import etcdpy_member
    from etcdpy.testing.watch_client import WatchSession

    member: MemberProcess = etcdpy_member(
        Path(str(tmp_path)), extra_args=["--experimental-watch-progress-notify-interval=200ms"]
    )
    member.start()
    try:
        with WatchSession(member.endpoint) as s:
            s.create(key=b"p", progress_notify=True)
            assert s.get().created
            notes = [s.get(timeout=5) for _ in range(2)]
        assert all(not r.events and r.watch_id == 0 and not r.created for r in notes)
        assert all(r.header.revision == 1 for r in notes)
        assert isinstance(notes[0], pb.WatchResponse)
    finally:
        member.stop()
