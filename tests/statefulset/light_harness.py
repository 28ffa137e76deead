"""The contract's light harness: StatefulSet pods as local processes. One hosts file maps every
pod's DNS name to its own loopback address (127.<random>.<random>.<10 + ordinal>); each process
runs in a private mount namespace (``unshare --mount``) with that file bind-mounted over
/etc/hosts, so the pods find each other by the names the chart gives them. Every pod listens on
the same (free) client and peer ports on its own address. Processes are stopped by PID.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcdpy.statefulset.names import PodNames
from etcdpy.testing.processes import etcdpy_command, stop_process

SET = "etcdpy"
SERVICE = "etcdpy-headless"
NAMESPACE = "ns1"
# The pods' DNS names, as etcdpy k8s computes them (ports and schemes do not enter names).
_NAMES = PodNames(SET, SERVICE, NAMESPACE, "cluster.local", "http", "http", 0, 0)
MAX_PODS = 6
# unshare keeps the PID: sh execs the command, so the pod's PID is the member's.
_IN_NAMESPACE = 'mount --bind "$0" /etc/hosts && exec "$@"'


def _bindable(addresses: list[str], port: int) -> bool:
    for address in addresses:
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (make system-deps installs it)"
    return path


@dataclass
class LightSet:
    root: Path
    prefix: str = field(
        default_factory=lambda: f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
    )
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    client_port: int = 0
    peer_port: int = 0

    def __post_init__(self) -> None:
        addresses = [self.address(i) for i in range(MAX_PODS)]
        for _ in range(100):
            client, peer = random.sample(range(20000, 60000), 2)
            if _bindable(addresses, client) and _bindable(addresses, peer):
                self.client_port, self.peer_port = client, peer
                break
        else:
            raise RuntimeError("no free ports")
        lines = ["127.0.0.1 localhost"] + [
            f"{self.address(i)} {self.host(i)}" for i in range(MAX_PODS)
        ]
        self.hosts = self.root / "hosts"
        self.hosts.write_text("\n".join(lines) + "\n")

    def address(self, ordinal: int) -> str:
        return f"{self.prefix}.{10 + ordinal}"

    def host(self, ordinal: int) -> str:
        return _NAMES.host(ordinal)

    def endpoint(self, ordinal: int) -> str:
        return f"{self.address(ordinal)}:{self.client_port}"

    def data_dir(self, ordinal: int) -> Path:
        return self.root / f"pvc-{ordinal}" / "data"

    def log(self, ordinal: int) -> Path:
        return self.root / f"pod-{ordinal}.log"

    def env(self, replicas: int, state: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD", "ETCDCTL"))}
        env.update(
            ETCDPY_K8S_NAMESPACE=NAMESPACE,
            ETCDPY_K8S_SERVICE=SERVICE,
            ETCDPY_K8S_REPLICAS=str(replicas),
            ETCDPY_K8S_INITIAL_CLUSTER_STATE=state,
            ETCDPY_K8S_CLIENT_PORT=str(self.client_port),
            ETCDPY_K8S_PEER_PORT=str(self.peer_port),
            ETCDPY_K8S_DIAL_TIMEOUT="0.5",
            ETCDPY_K8S_COMMAND_TIMEOUT="5",
            ETCDPY_K8S_DNS_TIMEOUT="10",
            ETCDPY_K8S_JOIN_TIMEOUT="40",
            ETCD_INITIAL_CLUSTER_TOKEN="etcd-cluster-k8s",
        )
        env.update(extra or {})
        return env

    def _wrapped(self, argv: list[str]) -> list[str]:
        return [
            tool("unshare"),
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _IN_NAMESPACE,
            str(self.hosts),
            *argv,
        ]

    def start(
        self, ordinal: int, replicas: int, state: str = "new", extra: dict[str, str] | None = None
    ) -> None:
        assert ordinal not in self.procs, f"pod {ordinal} runs already"
        self.data_dir(ordinal).parent.mkdir(parents=True, exist_ok=True)
        env = self.env(replicas, state, extra)
        env.update(
            ETCDPY_K8S_POD_NAME=f"{SET}-{ordinal}",
            ETCD_DATA_DIR=str(self.data_dir(ordinal)),
            ETCD_LISTEN_CLIENT_URLS=f"http://{self.address(ordinal)}:{self.client_port}",
            ETCD_LISTEN_PEER_URLS=f"http://{self.address(ordinal)}:{self.peer_port}",
        )
        with self.log(ordinal).open("ab") as log:
            self.procs[ordinal] = subprocess.Popen(
                self._wrapped([*etcdpy_command(), "k8s", "bootstrap"]),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def stop(self, ordinal: int, sig: int = signal.SIGTERM) -> int | None:
        proc = self.procs.pop(ordinal, None)
        return None if proc is None else stop_process(proc, sig)

    def stop_all(self) -> None:
        for ordinal in list(self.procs):
            self.stop(ordinal, signal.SIGKILL)

    def job(
        self,
        verb: str,
        replicas: int,
        extra: dict[str, str] | None = None,
        endpoints: list[int] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        urls = [f"http://{self.host(i)}:{self.client_port}" for i in (endpoints or [0, 1, 2])]
        env = self.env(
            replicas, "existing", {"ETCDPY_K8S_ENDPOINTS": ",".join(urls), **(extra or {})}
        )
        return subprocess.run(
            self._wrapped([*etcdpy_command(), "k8s", verb]),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def tail(self, ordinal: int, lines: int = 20) -> str:
        path = self.log(ordinal)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def etcdctl(
        self, ordinals: list[int], *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        endpoints = ",".join(self.endpoint(i) for i in ordinals)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
        env["ETCDCTL_API"] = "3"
        done = subprocess.run(
            [
                tool("etcdctl"),
                "--endpoints",
                endpoints,
                "--dial-timeout",
                "2s",
                "--command-timeout",
                "5s",
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check:
            assert done.returncode == 0, f"etcdctl {' '.join(args)}: {done.stderr}"
        return done

    def members(self, ordinals: list[int]) -> list[dict[str, Any]]:
        out = self.etcdctl(ordinals, "member", "list", "-w", "json").stdout
        return list(json.loads(out)["members"])

    def wait(self, what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            exited = {o: p.returncode for o, p in self.procs.items() if p.poll() is not None}
            assert not exited, f"pods exited {exited}:\n" + "\n".join(self.tail(o) for o in exited)
            try:
                if condition():
                    return
            except (AssertionError, ValueError, KeyError) as err:
                last = err
            time.sleep(0.3)
        logs = "\n".join(f"--- pod {o}\n{self.tail(o)}" for o in sorted(self.procs))
        raise AssertionError(f"timed out waiting for {what} ({last})\n{logs}")

    def agreed(self, ordinals: list[int]) -> bool:
        """Every pod of ``ordinals`` is a started voting member and all are at one revision."""
        members = self.members(ordinals)
        names = sorted(m.get("name", "") for m in members if not m.get("isLearner"))
        if names != sorted(f"{SET}-{o}" for o in ordinals) or len(members) != len(ordinals):
            return False
        revisions = set()
        for ordinal in ordinals:
            out = self.etcdctl([ordinal], "endpoint", "status", "-w", "json").stdout
            revisions.add(json.loads(out)[0]["Status"]["header"]["revision"])
        return len(revisions) == 1
