"""Patroni (Debian's ``patroni`` and PostgreSQL 15) with two nodes on the etcd3 DCS against
etcdpy: bootstrap, a streaming replica, a switchover with patronictl, then SIGKILL of the
leader's Patroni and the failover once its leader key's lease expires (issue 15).

Patroni talks to etcd through the JSON gateway (/v3/kv/txn, /v3/lease/keepalive, /v3/watch):
it is the gateway's heaviest real client. PostgreSQL refuses to run as root, so as root the
nodes run as the ``postgres`` user, in a temporary directory it owns. Everything listens on
free loopback ports and is stopped at the end, also when the test fails.

``ETCDPY_PATRONI_AGAINST_ETCD=1`` runs the same against Debian's etcd 3.4 (the reference).

With auth (issue 17): Patroni logs in (etcd3 ``username``/``password``, /v3/auth/authenticate
through the gateway, its token in the Authorization header) as a user whose only role is
readwrite on its namespace prefix, bootstraps, streams and switches over.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member, free_port
from tests.external_tools import Etcdctl, missing, require_tool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.first_pass_only(
        "Patroni speaks only the JSON gateway, which front-ends relay byte for byte to the core's "
        "own listener: the answers are the core's (this pass), the relay is proven with "
        "front-ends by test_gateway.py and test_gateway_differential.py"
    ),
]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCOPE = "etcdpy-patroni"
NAMESPACE = f"/service/{SCOPE}/"  # Patroni's keys: its default namespace, then the scope
ROOT = "--user=root:rootpw"
# Patroni wants loop_wait + 2 * retry_timeout <= ttl; short, so a failover takes seconds.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4
STEP_TIMEOUT = 60.0  # bootstrap, replica, switchover, failover: each well within this

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = STEP_TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            last_error = repr(exc)
        else:
            if value:
                return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} {last_error}")


@dataclass
class Node:
    name: str
    root: Path
    dcs_port: int
    run_as: pwd.struct_passwd | None
    api_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # etcd user and password Patroni logs in with; None: auth is off
    credentials: tuple[str, str] | None = None

    @property
    def config(self) -> Path:
        return self.root / f"{self.name}.yml"

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def write_config(self) -> None:
        root = self.root
        config: dict[str, Any] = {
            "scope": SCOPE,
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{self.api_port}",
                "connect_address": f"127.0.0.1:{self.api_port}",
            },
            "etcd3": self.etcd3_config(),
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": LOOP_WAIT,
                    "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": 1 << 20,
                    "postgresql": {
                        "use_pg_rewind": False,
                        "parameters": {"max_wal_senders": 5, "max_replication_slots": 5},
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(root / f"{self.name}.pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                },
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication replicator 127.0.0.1/32 trust",
                ],
                "parameters": {
                    "unix_socket_directories": str(root),
                    "shared_buffers": "16MB",
                    "max_connections": 20,
                    "fsync": "off",  # a test: no need to wait for the disk
                },
            },
        }
        # JSON is YAML: no YAML writer needed.
        self.config.write_text(json.dumps(config, indent=1))

    def etcd3_config(self) -> dict[str, str]:
        config = {"hosts": f"127.0.0.1:{self.dcs_port}"}
        if self.credentials is not None:
            config["username"], config["password"] = self.credentials
        return config

    def start(self) -> None:
        self.write_config()
        env = {
            "PATH": f"{PG_BIN}:/usr/bin:/bin",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [require_tool("patroni"), str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,
                **_as_user(self.run_as),
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        """Patroni, then its PostgreSQL (which Patroni starts in a session of its own)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)

    def sql(self, query: str) -> str:
        connect = ["-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d", "postgres"]
        out = subprocess.run(
            [str(PG_BIN / "psql"), *connect, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True,
            timeout=10,
            env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "3"},
        )
        if out.returncode != 0:
            raise ValueError(out.stderr.decode())
        return out.stdout.decode().strip()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def patronictl(node: Node, *args: str) -> str:
    out = subprocess.run(
        [require_tool("patronictl"), "-c", str(node.config), *args],
        capture_output=True,
        timeout=60,
        env={"PATH": f"{PG_BIN}:/usr/bin:/bin", "HOME": str(node.root), "LANG": "C.UTF-8"},
    )
    if out.returncode != 0:
        raise ValueError(f"patronictl {args}: {out.stdout.decode()} {out.stderr.decode()}")
    return out.stdout.decode()


def members(node: Node) -> dict[str, dict[str, Any]]:
    listed = json.loads(patronictl(node, "list", "-f", "json"))
    return {m["Member"]: m for m in listed}


def streaming(leader: Node, replica: Node) -> bool:
    """The leader is a primary with the replica streaming from it, per PostgreSQL itself."""
    if leader.sql("select pg_is_in_recovery()") != "f":
        return False
    if replica.sql("select pg_is_in_recovery()") != "t":
        return False
    return replica.sql("select status from pg_stat_wal_receiver") == "streaming"


def leader_of(node: Node) -> str | None:
    for name, member in members(node).items():
        if member["Role"] == "Leader" and member["State"] == "running":
            return name
    return None


@dataclass
class Cluster:
    dcs: MemberProcess
    nodes: dict[str, Node]

    def wait_roles(self, leader: str, replica: str) -> None:
        a, b = self.nodes[leader], self.nodes[replica]

        def settled() -> bool:
            listed = members(a)
            return (
                listed.get(leader, {}).get("Role") == "Leader"
                and listed.get(replica, {}).get("Role") == "Replica"
                and listed[replica].get("State") in ("running", "streaming")
                and streaming(a, b)
            )

        wait_for(f"{leader} leading and {replica} streaming", settled)

    def diagnostics(self) -> str:
        parts = [f"--- DCS ({self.dcs.name})\n{self.dcs.log_tail(40)}"]
        parts += [f"--- {n.name}\n{n.log_tail()}" for n in self.nodes.values()]
        return "\n".join(parts)


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        missing("running as root and there is no postgres user to run PostgreSQL as")


def set_up_auth(dcs: MemberProcess) -> tuple[str, str]:
    """root, and a user "patroni" whose one role reads and writes Patroni's namespace only."""
    etcdctl = Etcdctl(dcs.endpoint)
    etcdctl.out("user", "add", "root:rootpw")
    etcdctl.out("auth", "enable")
    for args in (
        ("role", "add", "patroni"),
        ("role", "grant-permission", "patroni", "readwrite", NAMESPACE, "--prefix"),
        ("user", "add", "patroni:patronipw"),
        ("user", "grant-role", "patroni", "patroni"),
    ):
        etcdctl.out(ROOT, *args)
    return "patroni", "patronipw"


@contextlib.contextmanager
def patroni_cluster(tmp_path: Path, with_auth: bool) -> Iterator[Cluster]:
    require_tool("patroni")
    require_tool("patronictl")
    if not (PG_BIN / "postgres").exists():
        missing(f"PostgreSQL 15 is not installed ({PG_BIN})")
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="etcdpy-patroni-"))
    if run_as is not None:
        os.chown(root, run_as.pw_uid, run_as.pw_gid)
    if os.environ.get("ETCDPY_PATRONI_AGAINST_ETCD") == "1":
        dcs = etcd_member(tmp_path)
    else:
        dcs = etcdpy_member(tmp_path)
    dcs.start()
    credentials = set_up_auth(dcs) if with_auth else None
    nodes = {
        name: Node(name, root, dcs.client_port, run_as, credentials=credentials)
        for name in ("pg1", "pg2")
    }
    built = Cluster(dcs, nodes)
    try:
        yield built
    except BaseException:
        print(built.diagnostics())
        raise
    finally:
        for node in nodes.values():
            node.stop()
            with contextlib.suppress(OSError):  # kept with pytest's temporary directories
                shutil.copy(node.log, tmp_path / node.log.name)
        dcs.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with patroni_cluster(tmp_path, with_auth=False) as built:
        yield built


@pytest.fixture
def auth_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with patroni_cluster(tmp_path, with_auth=True) as built:
        yield built


def test_patroni_bootstrap_switchover_and_failover(cluster: Cluster) -> None:
    pg1, pg2 = cluster.nodes["pg1"], cluster.nodes["pg2"]
    started = time.monotonic()
    pg1.start()
    wait_for("pg1 to bootstrap and lead", lambda: leader_of(pg1) == "pg1")
    pg2.start()
    cluster.wait_roles("pg1", "pg2")
    pg1.sql("create table t (x int primary key); insert into t values (1)")
    wait_for("row 1 on the replica", lambda: pg2.sql("select count(*) from t where x = 1") == "1")
    bootstrapped = time.monotonic()

    patronictl(pg1, "switchover", "--leader", "pg1", "--candidate", "pg2", "--force")
    cluster.wait_roles("pg2", "pg1")
    pg2.sql("insert into t values (2)")
    wait_for("row 2 on the replica", lambda: pg1.sql("select count(*) from t") == "2")
    switched = time.monotonic()

    # The leader's Patroni dies: nothing keeps its leader key's lease alive any more, so the
    # key expires after the ttl and the replica takes over. Its PostgreSQL keeps running
    # (Patroni's docs: that is what a watchdog is for); it is fenced here by hand, as an
    # operator would, before checking the new leader.
    pg2.kill9()
    wait_for("pg1 to take over", lambda: leader_of(pg1) == "pg1", timeout=TTL + STEP_TIMEOUT)
    assert pg1.sql("select pg_is_in_recovery()") == "f"
    failed_over = time.monotonic()
    pg2.stop()
    assert pg1.sql("select array_agg(x order by x) from t") == "{1,2}"
    pg1.sql("insert into t values (3)")
    assert pg1.sql("select count(*) from t") == "3"
    print(
        f"bootstrap {bootstrapped - started:.1f}s, switchover {switched - bootstrapped:.1f}s,"
        f" failover {failed_over - switched:.1f}s"
    )


def test_patroni_logs_in_as_a_user_limited_to_its_namespace(auth_cluster: Cluster) -> None:
    pg1, pg2 = auth_cluster.nodes["pg1"], auth_cluster.nodes["pg2"]
    pg1.start()
    wait_for("pg1 to bootstrap and lead", lambda: leader_of(pg1) == "pg1")
    pg2.start()
    auth_cluster.wait_roles("pg1", "pg2")
    pg1.sql("create table t (x int primary key); insert into t values (1)")
    wait_for("row 1 on the replica", lambda: pg2.sql("select count(*) from t where x = 1") == "1")
    patronictl(pg1, "switchover", "--leader", "pg1", "--candidate", "pg2", "--force")
    auth_cluster.wait_roles("pg2", "pg1")

    etcdctl = Etcdctl(auth_cluster.dcs.endpoint)
    keys = etcdctl.out(ROOT, "get", "--prefix", "--keys-only", NAMESPACE).split()
    assert f"{NAMESPACE}leader" in keys and f"{NAMESPACE}members/pg2" in keys, keys
    assert etcdctl.out(ROOT, "get", "--print-value-only", f"{NAMESPACE}leader").strip() == "pg2"
    outside = etcdctl.run("--user=patroni:patronipw", "get", "/service/other", check=False)
    assert "etcdserver: permission denied" in outside.stderr
