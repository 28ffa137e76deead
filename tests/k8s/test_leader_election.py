"""Leader election on etcd's concurrency protocol, against etcdpy and etcd 3.4, with Debian's
etcdctl 3.4 campaigning and observing in the same election."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from etcdpy.k8s import errors
from etcdpy.k8s.etcd import EtcdClient
from etcdpy.k8s.leader_election import LeaderElection, prefix_end
from tests.external_tools import require_tool
from tests.k8s.conftest import Server


@pytest.fixture
def client(server: Server) -> Iterator[EtcdClient]:
    etcd = EtcdClient.connect(server.endpoint)
    yield etcd
    etcd.close()


def election_name() -> str:
    return f"/elections/test-{uuid.uuid4().hex[:8]}"


class Candidate:
    """One LeaderElection.run in a thread, recording when it leads and when it loses."""

    def __init__(self, client: EtcdClient, name: str, identity: str, ttl: int = 5) -> None:
        self.election = LeaderElection(client, name, identity, ttl=ttl)
        self.stop = threading.Event()
        self.leading = threading.Event()
        self.lost_seen = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _lead(self, lost: threading.Event) -> None:
        self.leading.set()
        lost.wait(30)
        self.lost_seen.set()

    def _run(self) -> None:
        self.election.run(self._lead, self.stop)

    def end(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


class EtcdctlElect:
    """``etcdctl elect NAME [PROPOSAL]`` running, its output lines in a queue."""

    def __init__(self, endpoint: str, *args: str) -> None:
        env = dict(os.environ, ETCDCTL_API="3")
        env.pop("ETCDCTL_ENDPOINTS", None)
        self.proc = subprocess.Popen(
            [require_tool("etcdctl"), f"--endpoints={endpoint}", "elect", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_lines(self, count: int, timeout: float = 10.0) -> list[str]:
        return [self.lines.get(timeout=timeout) for _ in range(count)]

    def silent_for(self, seconds: float) -> bool:
        try:
            self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def end(self) -> None:
        """SIGTERM, as an operator's ^C: etcdctl resigns and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)  # EOF once etcdctl has exited
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def test_one_leader_at_a_time_and_the_next_takes_over_at_once(client: EtcdClient) -> None:
    name = election_name()
    first = Candidate(client, name, "first")
    try:
        assert first.leading.wait(10)
        second = Candidate(client, name, "second")
        try:
            assert not second.leading.wait(0.3)
            leader = first.election.leader()
            assert leader == (first.election.key, "first")
            assert first.election.key == f"{name}/{first.election.key.rsplit('/', 1)[1]}"
            int(first.election.key.rsplit("/", 1)[1], 16)  # the lease id, in hex
            started = time.monotonic()
            first.end()
            assert first.lost_seen.is_set()
            assert second.leading.wait(5)
            assert time.monotonic() - started < 3  # the lease was revoked, no TTL wait
            assert second.election.leader() == (second.election.key, "second")
        finally:
            second.end()
        kvs = client.range(name.encode() + b"/", prefix_end(name.encode() + b"/")).kvs
        assert list(kvs) == []  # every key went with its lease
    finally:
        first.end()


def test_a_leader_whose_key_goes_loses_leadership(client: EtcdClient) -> None:
    candidate = Candidate(client, election_name(), "me")
    try:
        assert candidate.leading.wait(10)
        lease_id = int(candidate.election.key.rsplit("/", 1)[1], 16)
        client.lease_revoke(lease_id)  # as if the lease expired
        assert candidate.lost_seen.wait(5)
        candidate.thread.join(10)
        assert not candidate.thread.is_alive()  # run() returned on its own
    finally:
        candidate.end()


def test_etcdctl_elect_and_our_election_agree_on_the_leader(
    server: Server, client: EtcdClient
) -> None:
    name = election_name()
    ours = Candidate(client, name, "ours")
    theirs: EtcdctlElect | None = None
    observer: EtcdctlElect | None = None
    try:
        assert ours.leading.wait(10)
        observer = EtcdctlElect(server.endpoint, "-l", name)
        assert observer.next_lines(2) == [ours.election.key, "ours"]
        theirs = EtcdctlElect(server.endpoint, name, "etcdctl-proposal")
        assert theirs.silent_for(0.3)  # etcdctl waits behind our key
        ours.end()
        key, value = theirs.next_lines(2)
        assert key.startswith(f"{name}/") and value == "etcdctl-proposal"
        assert observer.next_lines(2) == [key, value]
        again = Candidate(client, name, "ours-again")
        try:
            assert not again.leading.wait(0.3)  # we wait behind etcdctl's key
            theirs.end()  # etcdctl resigns
            assert again.leading.wait(5)
            assert observer.next_lines(2) == [again.election.key, "ours-again"]
        finally:
            again.end()
    finally:
        ours.end()
        for proc in (theirs, observer):
            if proc is not None:
                proc.end()


def test_stop_while_campaigning_returns_without_leading(client: EtcdClient) -> None:
    name = election_name()
    leader = Candidate(client, name, "leader")
    try:
        assert leader.leading.wait(10)
        waiting = Candidate(client, name, "waiting")
        time.sleep(0.2)
        started = time.monotonic()
        waiting.end()
        assert time.monotonic() - started < 2
        assert not waiting.leading.is_set()
        assert leader.election.leader() == (leader.election.key, "leader")
    finally:
        leader.end()


def test_bad_arguments_are_refused() -> None:
    no_client: Any = None
    with pytest.raises(ValueError):
        LeaderElection(no_client, "", "me")
    with pytest.raises(ValueError):
        LeaderElection(no_client, "x", "me", ttl=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class KeepAlivesFail:
    """The real client, except that keep-alives fail (etcd unreachable) or say the lease is gone."""

    def __init__(self, client: EtcdClient, answer: int | None) -> None:
        self._client = client
        self.answer = answer
        self.calls = 0

    def lease_keepalive_once(self, lease_id: int) -> int:
        self.calls += 1
        if self.answer is None:
            raise errors.ServiceUnavailable("etcd is unreachable")
        return self.answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("answer", [None, 0], ids=["keepalives-fail", "lease-expired"])
def test_leadership_is_lost_when_keepalives_stop(etcdpy_server: Server, answer: int | None) -> None:
    real = EtcdClient.connect(etcdpy_server.endpoint)
    client = KeepAlivesFail(real, answer)
    clock = FakeClock()
    election = LeaderElection(client, election_name(), "me", ttl=30, clock=clock)
    lost_seen = threading.Event()
    leading = threading.Event()

    def lead(lost: threading.Event) -> None:
        leading.set()
        lost.wait(10)
        lost_seen.set()

    stop = threading.Event()
    thread = threading.Thread(target=election.run, args=(lead, stop))
    thread.start()
    try:
        assert leading.wait(10)
        clock.now += 10.5  # past TTL/3: the first keep-alive is due
        assert until(lambda: client.calls >= 1)
        if answer is None:  # a failed keep-alive alone is not enough: the TTL has not passed
            assert not lost_seen.wait(0.2)
            clock.now += 30
        assert lost_seen.wait(5)
        thread.join(10)
        assert not thread.is_alive()
        assert election.leader() is None  # the lease was revoked on the way out
    finally:
        stop.set()
        thread.join(10)
        real.close()


def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
