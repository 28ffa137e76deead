"""The auth tests of aetcd and python-etcd3, widened into scenarios, run with each library
unchanged against a real etcdpy and a real etcd 3.4 with the same assertions.

What the libraries' own suites test about auth (aetcd tests/integration/test_auth.py,
python-etcd3 tests/test_etcd3.py test_user_pwd_auth): etcdctl adds root:pwd and enables auth,
then the library logs in as root and reads. Neither library has a user/role API nor logs in
again when its token expires, so users and roles are made with Debian's etcdctl 3.4, as their
suites do, and the scenarios cover what the libraries do with auth: log in, permitted and
denied reads, writes, deletes and txns (the library's exception and etcd's message), a wrong
password and an unknown user, no credentials, watches of a permitted prefix and of a denied
key, and an expired simple token (--auth-token-ttl) followed by a new login. python-etcd3 runs
the scenario over plain text (its token as metadata only: grpcio sends call credentials only
over TLS) and unchanged over server TLS.

Each library runs in its own interpreter (their protos clash with ours in one descriptor pool);
its script prints one JSON object of what it saw, and the test compares it with what etcd 3.4's
answers make the library do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member
from tests.external_tools import Etcdctl, require_tool
from tests.integration.test_client_libraries import _run_isolated
from tests.tls_certs import write_member_certs

pytestmark = pytest.mark.integration

ROOT = "--user=root:pwd"
TOKEN_TTL_SECONDS = 2

# Outcomes as the scripts print them: "ok", a value, or "<exception class>: <message>"
# (for a raw grpc.RpcError, "<status code>: <details>").
DENIED_AETCD = "ClientError: etcdserver: permission denied"
DENIED_ETCD3 = "PERMISSION_DENIED: etcdserver: permission denied"
BAD_LOGIN = "etcdserver: authentication failed, invalid user ID or password"
NO_USER = "etcdserver: user name is empty"
EXPIRED = "etcdserver: invalid auth token"

# Shared by both scripts: run a step, record its outcome by name.
PRELUDE = """
import json, sys
cfg = json.loads(sys.argv[1])
seen = {}

def outcome(exc):
    code = getattr(exc, "code", None)
    if callable(code) and hasattr(exc, "details"):  # a raw grpc.RpcError
        return f"{code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
"""

AETCD_SCENARIO = (
    PRELUDE
    + """
import asyncio
import aetcd

def client(user=None, password=None):
    return aetcd.Client(host="127.0.0.1", port=cfg["port"], username=user, password=password)

async def step(name, make):
    try:
        seen[name] = await make()
    except Exception as exc:
        seen[name] = outcome(exc)

async def first_event(watch, seconds):
    async for event in watch:
        return event.kv.key.decode()

async def scenario():
    async with client("root", "pwd") as root:  # aetcd's own test_auth
        await step("root_get", lambda: root.get(b"key"))
        await root.put(b"/other/secret", b"s")
        async with client("alice", "alicepw") as alice, client("rita", "ritapw") as rita:
            await step("alice_put", lambda: _ok(alice.put(b"/app/a", b"1")))
            await step("alice_get", lambda: _value(alice.get(b"/app/a")))
            await step("alice_prefix", lambda: _keys(alice.get_prefix(b"/app/")))
            await step("alice_get_denied", lambda: _value(alice.get(b"/other/secret")))
            await step("alice_put_denied", lambda: _ok(alice.put(b"/other/x", b"x")))
            await step("alice_delete_denied", lambda: _ok(alice.delete(b"/other/secret")))
            tx = alice.transactions
            await step("alice_txn_denied", lambda: _ok(alice.transaction(
                compare=[tx.value(b"/other/secret") == b"s"],
                success=[tx.put(b"/app/t", b"t")], failure=[])))
            await step("alice_txn", lambda: _succeeded(alice.transaction(
                compare=[tx.value(b"/app/a") == b"1"],
                success=[tx.put(b"/app/t", b"t")], failure=[])))
            await step("rita_get", lambda: _value(rita.get(b"/app/a")))
            await step("rita_put_denied", lambda: _ok(rita.put(b"/app/a", b"2")))

            watch = await alice.watch_prefix(b"/app/w")
            await root.put(b"/app/w1", b"w")
            seen["alice_watch"] = await asyncio.wait_for(first_event(watch, 10), 10)
            await watch.cancel()
            # etcd cancels a denied watcher at once (created and canceled in one response);
            # aetcd does not look at "canceled": its watch just sees nothing.
            denied = await alice.watch(b"/other/secret")
            await root.put(b"/other/secret", b"s2")
            try:
                seen["alice_watch_denied"] = await asyncio.wait_for(first_event(denied, 1), 1)
            except asyncio.TimeoutError:
                seen["alice_watch_denied"] = "no event"
        await step("root_sees_no_denied_write", lambda: _value(root.get(b"/other/x")))
        await step("root_secret_kept", lambda: _value(root.get(b"/other/secret")))

    # aetcd logs in when it connects (async with, or the first call)
    await step("wrong_password", lambda: _read_as("alice", "nope"))
    await step("unknown_user", lambda: _read_as("mallory", "pw"))
    await step("no_credentials", lambda: _read_as(None, None))

async def _read_as(user, password):
    async with client(user, password) as c:
        return await _value(c.get(b"/app/a"))

async def _ok(call):
    await call
    return "ok"

async def _value(call):
    got = await call
    return None if got is None else got.value.decode()

async def _keys(call):
    return [kv.key.decode() for kv in await call]

async def _succeeded(call):
    succeeded, _ = await call
    return succeeded

asyncio.run(scenario())
print(json.dumps(seen))
"""
)

ETCD3_SCENARIO = (
    PRELUDE
    + """
import queue
import threading
import etcd3

TLS_CA = cfg.get("ca_cert")  # None: plain text

def client(user=None, password=None, token_as_metadata=TLS_CA is None):
    c = etcd3.client(host="127.0.0.1", port=cfg["port"], user=user, password=password,
                     ca_cert=TLS_CA, timeout=10)
    if token_as_metadata:
        # python-etcd3 hands its token to grpcio both as call credentials, which grpcio sends
        # only over TLS, and as "token" metadata: over plain text, use the metadata alone.
        c.call_credentials = c.watcher._credentials = None
    return c

def step(name, make):
    try:
        seen[name] = make()
    except Exception as exc:
        seen[name] = outcome(exc)

def ok(_response):
    return "ok"

def value(got):
    return None if got[0] is None else got[0].decode()

if TLS_CA is None:
    step("plaintext_refused",
         lambda: value(client("root", "pwd", token_as_metadata=False).get("k")))
root = client("root", "pwd")  # python-etcd3's own test_user_pwd_auth
step("root_get", lambda: value(root.get("key")))
root.put("/other/secret", "s")
alice, rita = client("alice", "alicepw"), client("rita", "ritapw")
step("alice_put", lambda: ok(alice.put("/app/a", "1")))
step("alice_get", lambda: value(alice.get("/app/a")))
step("alice_prefix", lambda: [m.key.decode() for _, m in alice.get_prefix("/app/")])
step("alice_get_denied", lambda: value(alice.get("/other/secret")))
step("alice_put_denied", lambda: ok(alice.put("/other/x", "x")))
step("alice_delete_denied", lambda: ok(alice.delete("/other/secret")))
tx = alice.transactions
step("alice_txn_denied", lambda: ok(alice.transaction(
    compare=[tx.value("/other/secret") == "s"], success=[tx.put("/app/t", "t")],
    failure=[])))
step("alice_txn", lambda: alice.transaction(
    compare=[tx.value("/app/a") == "1"], success=[tx.put("/app/t", "t")], failure=[])[0])
step("rita_get", lambda: value(rita.get("/app/a")))
step("rita_put_denied", lambda: ok(rita.put("/app/a", "2")))

events = queue.Queue()
watch_id = alice.add_watch_prefix_callback("/app/w", events.put)
root.put("/app/w1", "w")
seen["alice_watch"] = events.get(timeout=10).events[0].key.decode()
alice.cancel_watch(watch_id)
# etcd cancels a denied watcher at once; python-etcd3 ignores "canceled", so watch_once times out.
threading.Timer(0.3, root.put, ("/other/secret", "s2")).start()
step("alice_watch_denied", lambda: alice.watch_once("/other/secret", timeout=1).key.decode())
step("root_sees_no_denied_write", lambda: value(root.get("/other/x")))
step("root_secret_kept", lambda: value(root.get("/other/secret")))

step("wrong_password", lambda: client("alice", "nope"))
step("unknown_user", lambda: client("mallory", "pw"))
step("no_credentials", lambda: value(client().get("/app/a")))
print(json.dumps(seen))
"""
)

# What the token-expiry scripts do: log in, read, stay idle past --auth-token-ttl, read again
# with the old token (neither library logs in again), then read through a new login.
AETCD_EXPIRY = (
    PRELUDE
    + """
import asyncio, time
import aetcd

async def read(c):
    try:
        got = await c.get(b"/app/a")
        return None if got is None else got.value.decode()
    except Exception as exc:
        return outcome(exc)

async def scenario():
    def login():
        return aetcd.Client(host="127.0.0.1", port=cfg["port"], username="alice",
                            password="alicepw")
    async with login() as alice:
        seen["fresh"] = await read(alice)
        await asyncio.sleep(cfg["idle"])
        seen["expired"] = await read(alice)
    async with login() as again:
        seen["new_login"] = await read(again)

asyncio.run(scenario())
print(json.dumps(seen))
"""
)

ETCD3_EXPIRY = (
    PRELUDE
    + """
import time
import etcd3

def login():
    c = etcd3.client(host="127.0.0.1", port=cfg["port"], user="alice", password="alicepw",
                     timeout=10)
    c.call_credentials = None  # the token as metadata only: call credentials need TLS
    return c

def read(c):
    try:
        got = c.get("/app/a")[0]
        return None if got is None else got.decode()
    except Exception as exc:
        return outcome(exc)

alice = login()
seen["fresh"] = read(alice)
time.sleep(cfg["idle"])
seen["expired"] = read(alice)
seen["new_login"] = read(login())
print(json.dumps(seen))
"""
)


def _env(library: str) -> dict[str, str] | None:
    if library == "etcd3":  # its generated code needs the pure-Python protobuf runtime
        return dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    return None


def _run_scenario(library: str, script: str, config: dict[str, Any]) -> dict[str, Any]:
    out = _run_isolated(script, _env(library), args=[json.dumps(config)])
    seen: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return seen


def start_member(kind: str, tmp: Path, extra_args: list[str] | None = None) -> MemberProcess:
    if kind == "etcd":
        require_tool("etcd")
        process = etcd_member(tmp, name=kind, extra_args=extra_args)
    else:
        process = etcdpy_member(tmp, name=kind, extra_args=extra_args)
    process.start()
    return process


def set_up_users(etcdctl: Etcdctl, *tls: str) -> None:
    """root:pwd as the libraries' suites make it; alice reads and writes /app/, rita reads it."""
    etcdctl.out(*tls, "user", "add", "root:pwd")
    etcdctl.out(*tls, "auth", "enable")
    for args in (
        ("role", "add", "app"),
        ("role", "grant-permission", "app", "readwrite", "/app/", "--prefix"),
        ("role", "add", "reader"),
        ("role", "grant-permission", "reader", "read", "/app/", "--prefix"),
        ("user", "add", "alice:alicepw"),
        ("user", "grant-role", "alice", "app"),
        ("user", "add", "rita:ritapw"),
        ("user", "grant-role", "rita", "reader"),
    ):
        etcdctl.out(*tls, ROOT, *args)


@pytest.fixture(params=["etcd", "etcdpy"])
def member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemberProcess]:
    process = start_member(request.param, tmp_path)
    try:
        set_up_users(Etcdctl(process.endpoint))
        yield process
    finally:
        process.stop()


@pytest.fixture(params=["etcd", "etcdpy"])
def short_token_member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemberProcess]:
    ttl = ["--auth-token=simple", f"--auth-token-ttl={TOKEN_TTL_SECONDS}"]
    process = start_member(request.param, tmp_path, ttl)
    try:
        etcdctl = Etcdctl(process.endpoint)
        set_up_users(etcdctl)
        etcdctl.out(ROOT, "put", "/app/a", "1")
        yield process
    finally:
        process.stop()


@pytest.fixture(params=["etcd", "etcdpy"])
def tls_member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemberProcess]:
    """Server TLS (--cert-file/--key-file), no client certificates: the users log in."""
    ca = trustme.CA()
    certs = tmp_path / "certs"
    server = write_member_certs(ca, certs, "server", hosts=("127.0.0.1", "localhost"))
    probe = write_member_certs(ca, certs, "probe")
    kind: str = request.param
    if kind == "etcd":
        require_tool("etcd")
    make = etcd_member if kind == "etcd" else etcdpy_member
    process = make(
        tmp_path, name=kind, extra_args=[f"--cert-file={server.cert}", f"--key-file={server.key}"]
    )
    process.client_scheme = "https"
    process.client_tls = (server.ca, probe.cert, probe.key)
    process.start()
    try:
        set_up_users(Etcdctl(f"https://{process.endpoint}"), f"--cacert={server.ca}")
        yield process
    finally:
        process.stop()


COMMON = {
    "root_get": None,
    "alice_put": "ok",
    "alice_get": "1",
    "alice_prefix": ["/app/a"],
    "alice_txn": True,
    "rita_get": "1",
    "alice_watch": "/app/w1",
    "root_sees_no_denied_write": None,
    "root_secret_kept": "s2",
}


def test_aetcd_auth(member: MemberProcess) -> None:
    seen = _run_scenario("aetcd", AETCD_SCENARIO, {"port": member.client_port})
    assert seen == {
        **COMMON,
        **{
            name: DENIED_AETCD
            for name in (
                "alice_get_denied",
                "alice_put_denied",
                "alice_delete_denied",
                "alice_txn_denied",
                "rita_put_denied",
            )
        },
        "alice_watch_denied": "no event",
        "wrong_password": f"InvalidArgumentError: {BAD_LOGIN}",
        "unknown_user": f"InvalidArgumentError: {BAD_LOGIN}",
        "no_credentials": f"InvalidArgumentError: {NO_USER}",
    }


def test_python_etcd3_auth(member: MemberProcess) -> None:
    seen = _run_scenario("etcd3", ETCD3_SCENARIO, {"port": member.client_port})
    # grpcio refuses, in the client, to send call credentials over plain text.
    refused = seen.pop("plaintext_refused")
    assert refused.startswith("UNAUTHENTICATED: ") and "etcdserver" not in refused, refused
    assert seen == {
        **COMMON,
        **{
            name: DENIED_ETCD3
            for name in (
                "alice_get_denied",
                "alice_put_denied",
                "alice_delete_denied",
                "alice_txn_denied",
                "rita_put_denied",
            )
        },
        "alice_watch_denied": "WatchTimedOut: ",
        "wrong_password": f"INVALID_ARGUMENT: {BAD_LOGIN}",
        "unknown_user": f"INVALID_ARGUMENT: {BAD_LOGIN}",
        "no_credentials": f"INVALID_ARGUMENT: {NO_USER}",
    }


def test_python_etcd3_auth_over_tls(tls_member: MemberProcess) -> None:
    """Over TLS python-etcd3 works unchanged: grpcio sends its call credentials."""
    assert tls_member.client_tls is not None
    config = {"port": tls_member.client_port, "ca_cert": str(tls_member.client_tls[0])}
    seen = _run_scenario("etcd3", ETCD3_SCENARIO, config)
    assert seen == {
        **COMMON,
        **dict.fromkeys(
            (
                "alice_get_denied",
                "alice_put_denied",
                "alice_delete_denied",
                "alice_txn_denied",
                "rita_put_denied",
            ),
            DENIED_ETCD3,
        ),
        "alice_watch_denied": "WatchTimedOut: ",
        "wrong_password": f"INVALID_ARGUMENT: {BAD_LOGIN}",
        "unknown_user": f"INVALID_ARGUMENT: {BAD_LOGIN}",
        "no_credentials": f"INVALID_ARGUMENT: {NO_USER}",
    }


@pytest.mark.parametrize(
    ("library", "script", "expired"),
    [
        ("aetcd", AETCD_EXPIRY, f"UnauthenticatedError: {EXPIRED}"),
        ("etcd3", ETCD3_EXPIRY, f"UNAUTHENTICATED: {EXPIRED}"),
    ],
    ids=["aetcd", "etcd3"],
)
def test_expired_simple_token_then_a_new_login(
    short_token_member: MemberProcess, library: str, script: str, expired: str
) -> None:
    # etcd's simple-token keeper looks once a second: idle for the TTL plus two of its ticks.
    config = {"port": short_token_member.client_port, "idle": TOKEN_TTL_SECONDS + 2}
    seen = _run_scenario(library, script, config)
    assert seen == {"fresh": "1", "expired": expired, "new_login": "1"}
