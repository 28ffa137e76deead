"""The controllers' command plumbing on real servers: with leader election one replica works
and another stands by until the first stops; a controller that fails resigns and exits 1
instead of holding leadership while doing nothing; bad flags are refused."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator

import pytest

from etcdpy.k8s.controllers.command import (
    CommonOptions,
    add_common_arguments,
    host_port,
    run_elected,
)
from etcdpy.k8s.store import ObjectStore
from tests.k8s.conftest import Server
from tests.k8s.controller_helpers import wait_for


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    store = ObjectStore.connect(server.endpoint, root=server.root, typed=False)
    yield store
    store.close()


def options(store: ObjectStore) -> CommonOptions:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, default_workers=1)
    args = parser.parse_args(["--leader-elect-lease-duration", "5"])
    assert args.leader_elect  # on by default
    return CommonOptions.from_args("test", args, store)


def test_one_replica_leads_and_the_other_takes_over_when_it_stops(store: ObjectStore) -> None:
    leading: list[str] = []
    stops = {"a": threading.Event(), "b": threading.Event()}
    codes: dict[str, int] = {}

    def replica(name: str) -> None:
        def start(lost: threading.Event) -> None:
            leading.append(name)
            lost.wait()

        codes[name] = run_elected(options(store), store, start, stops[name])

    first = threading.Thread(target=replica, args=("a",))
    first.start()
    wait_for(lambda: leading == ["a"], what="a leading")
    second = threading.Thread(target=replica, args=("b",))
    second.start()
    threading.Event().wait(0.3)
    assert leading == ["a"]  # b stands by
    stops["a"].set()
    first.join(timeout=10)
    wait_for(lambda: leading == ["a", "b"], what="b taking over")
    stops["b"].set()
    second.join(timeout=10)
    assert codes == {"a": 0, "b": 0}


def test_a_failing_controller_resigns_and_exits_1(store: ObjectStore) -> None:
    def start(lost: threading.Event) -> None:
        raise RuntimeError("informers did not sync")

    done = threading.Event()
    code: list[int] = []

    def run() -> None:
        code.append(run_elected(options(store), store, start))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(10), "run_elected kept leading after its controller failed"
    assert code == [1]
    # it resigned: the next candidate leads at once
    took_over = threading.Event()

    def follow(lost: threading.Event) -> None:
        took_over.set()

    stop = threading.Event()
    runner = threading.Thread(target=run_elected, args=(options(store), store, follow, stop))
    runner.start()
    assert took_over.wait(3)
    stop.set()
    runner.join(timeout=10)


@pytest.mark.parametrize("text", ["9090", "host:", "host:99999", "host:x"])
def test_bad_metrics_addresses_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        host_port(text)


def test_metrics_addresses() -> None:
    assert host_port("127.0.0.1:9090") == ("127.0.0.1", 9090)
    assert host_port(":0") == ("0.0.0.0", 0)
    assert host_port("[::1]:9090") == ("::1", 9090)
