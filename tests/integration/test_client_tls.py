"""Client TLS and mutual TLS against a real etcdpy process, driven by clients we did not write:
Debian's etcdctl 3.4 (--cacert/--cert/--key), curl, python-etcd3 and the npm etcd3 client. The
suite runs it with ETCD_FRONTEND_PROCESSES=1 and =2 (the front-end processes serve TLS then).
aetcd has no TLS settings (it always dials an insecure channel), so it is not among them."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from etcdpy.testing.processes import MemberProcess, etcdpy_member, free_port
from tests.external_tools import missing, require_tool
from tests.tls_certs import MemberCerts, write_member_certs

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def _served_certificate(m: TLSMember) -> bytes:
    """The DER certificate a new TLS connection to the member is shown."""
    context = ssl.create_default_context(cafile=str(m.server.ca))
    context.load_cert_chain(str(m.client.cert), str(m.client.key))
    host, port = m.member.endpoint.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@dataclass
class TLSMember:
    member: MemberProcess
    server: MemberCerts
    client: MemberCerts  # CN "alice", signed by the member's CA
    metrics_port: int


def _ctl_argv(member: TLSMember, *args: str, client: MemberCerts | None = None) -> list[str]:
    use = client or member.client
    return [
        require_tool("etcdctl"),
        f"--endpoints=https://{member.member.endpoint}",
        "--dial-timeout=3s",
        f"--cacert={member.server.ca}",
        f"--cert={use.cert}",
        f"--key={use.key}",
        *args,
    ]


def _ctl_env() -> dict[str, str]:
    env = dict(os.environ, ETCDCTL_API="3")
    env.pop("ETCDCTL_ENDPOINTS", None)
    return env


def _ctl(
    member: TLSMember, *args: str, client: MemberCerts | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = _ctl_env()
    proc = subprocess.run(
        _ctl_argv(member, *args, client=client),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
    return proc


def _start(
    tmp_path: Path, server: MemberCerts, client: MemberCerts, wait: bool = True
) -> TLSMember:
    metrics_port = free_port()
    member = etcdpy_member(
        tmp_path,
        extra_args=[
            f"--cert-file={server.cert}",
            f"--key-file={server.key}",
            f"--trusted-ca-file={server.ca}",
            "--client-cert-auth",
            f"--listen-metrics-urls=https://127.0.0.1:{metrics_port}",
        ],
    )
    member.client_scheme = "https"
    member.client_tls = (server.ca, client.cert, client.key)
    member.start(wait=wait)
    return TLSMember(member, server, client, metrics_port)


@pytest.fixture
def tls_member(tmp_path: Path) -> Iterator[TLSMember]:
    ca = trustme.CA()
    server = write_member_certs(ca, tmp_path / "certs", "server", hosts=("127.0.0.1", "localhost"))
    client = write_member_certs(ca, tmp_path / "certs", "alice", common_name="alice")
    started = _start(tmp_path, server, client)
    try:
        yield started
    finally:
        started.member.stop()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("curl"), "-s", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_etcdctl_and_curl_over_mutual_tls(tls_member: TLSMember, tmp_path: Path) -> None:
    m = tls_member
    assert _ctl(m, "put", "/registry/secrets/a", "s3cret").stdout.strip() == "OK"
    assert _ctl(m, "get", "/registry/secrets/a").stdout.splitlines() == [
        "/registry/secrets/a",
        "s3cret",
    ]
    health = _ctl(m, "endpoint", "health")
    assert "is healthy" in health.stdout + health.stderr
    # a watch over TLS sees a later put
    watcher = subprocess.Popen(
        _ctl_argv(m, "watch", "/registry/secrets/a"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_ctl_env(),
    )
    try:
        time.sleep(1.0)  # the watch is created
        _ctl(m, "put", "/registry/secrets/a", "rotated")
        assert watcher.stdout is not None
        lines = [watcher.stdout.readline().strip() for _ in range(3)]
        assert lines == ["PUT", "/registry/secrets/a", "rotated"]
    finally:
        watcher.kill()
        watcher.wait(timeout=10)
        if watcher.stdout is not None:
            watcher.stdout.close()
    # curl: /health on the client URL, /metrics on the https metrics URL, the gateway
    tls = ["--cacert", str(m.server.ca), "--cert", str(m.client.cert), "--key", str(m.client.key)]
    assert json.loads(_curl(*tls, f"https://{m.member.endpoint}/health").stdout) == {
        "health": "true"
    }
    metrics = _curl(*tls, f"https://127.0.0.1:{m.metrics_port}/metrics").stdout
    assert "etcd_server_has_leader 1" in metrics
    key = '{"key":"L3JlZ2lzdHJ5L3NlY3JldHMvYQ=="}'  # /registry/secrets/a
    answer = _curl(*tls, f"https://{m.member.endpoint}/v3/kv/range", "-d", key)
    assert json.loads(answer.stdout)["kvs"][0]["value"] == "cm90YXRlZA=="  # rotated


def test_refused_clients_get_connection_errors_and_the_member_keeps_serving(
    tls_member: TLSMember, tmp_path: Path
) -> None:
    m = tls_member
    stranger = write_member_certs(
        trustme.CA(), tmp_path / "certs", "mallory", common_name="mallory"
    )
    refused = _ctl(m, "get", "a", client=stranger, check=False)
    assert refused.returncode != 0
    # no client certificate under --client-cert-auth
    no_cert = _curl("--cacert", str(m.server.ca), f"https://{m.member.endpoint}/health")
    assert no_cert.returncode != 0 and no_cert.stdout == ""
    # plain text to the TLS port: the connection is closed without an answer (as etcd)
    plain = _curl(f"http://{m.member.endpoint}/health")
    assert plain.returncode == 52 and plain.stdout == ""  # curl: empty reply from server
    assert _ctl(m, "put", "k", "v").stdout.strip() == "OK"


def test_expired_server_certificate_replaced_while_serving(tmp_path: Path) -> None:
    ca = trustme.CA()
    certs = tmp_path / "certs"
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    expired = ca.issue_cert(
        "127.0.0.1", not_before=past, not_after=past + datetime.timedelta(days=1)
    )
    server = write_member_certs(ca, certs, "server")
    expired.cert_chain_pems[0].write_to_path(str(server.cert))
    expired.private_key_pem.write_to_path(str(server.key))
    client = write_member_certs(ca, certs, "alice", common_name="alice")
    m = _start(tmp_path, server, client, wait=False)
    try:
        health = f"https://{m.member.endpoint}/health"
        tls = ["--cacert", str(server.ca), "--cert", str(client.cert), "--key", str(client.key)]
        deadline = time.monotonic() + 30
        while True:  # up: the expired certificate is refused by the client
            proc = _curl("-S", *tls, health)
            if "expired" in proc.stderr:
                break
            assert time.monotonic() < deadline, proc.stderr
            time.sleep(0.2)
        # renewed in place (as cert-manager does): new connections get the new certificate
        renewed = ca.issue_cert("127.0.0.1")
        renewed.private_key_pem.write_to_path(str(server.key))
        renewed.cert_chain_pems[0].write_to_path(str(server.cert))
        m.member.wait_ready()
        assert _ctl(m, "put", "k", "v").stdout.strip() == "OK"
        # a new connection is handed the renewed certificate itself (whichever process of
        # the member takes it)
        served = _served_certificate(m)
        assert served == ssl.PEM_cert_to_DER_cert(renewed.cert_chain_pems[0].bytes().decode())
    finally:
        m.member.stop()


def test_python_etcd3_over_mutual_tls(tls_member: TLSMember) -> None:
    m = tls_member
    script = f"""
        import etcd3
        c = etcd3.client(
            host="127.0.0.1", port={m.member.client_port}, ca_cert={str(m.server.ca)!r},
            cert_cert={str(m.client.cert)!r}, cert_key={str(m.client.key)!r},
        )
        c.put("/tls/a", "1")
        value, _ = c.get("/tls/a")
        assert value == b"1", value
        print("etcd3-ok")
        """
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "etcd3-ok" in proc.stdout, proc.stderr


def test_npm_etcd3_over_mutual_tls(tls_member: TLSMember) -> None:
    node = require_tool("node")
    if not (NODE_DIR / "node_modules" / "etcd3").is_dir():
        missing("the npm etcd3 client is not installed in tests/node")
    m = tls_member
    env = dict(
        os.environ,
        ETCD3_TLS_CA=str(m.server.ca),
        ETCD3_TLS_CERT=str(m.client.cert),
        ETCD3_TLS_KEY=str(m.client.key),
    )
    proc = subprocess.run(
        [node, str(NODE_DIR / "client_check.js"), f"https://{m.member.endpoint}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["get"] == "1" and seen["txnSucceeded"] is True


def test_auto_tls_serves_a_self_signed_certificate(tmp_path: Path) -> None:
    member = etcdpy_member(tmp_path, extra_args=["--auto-tls"])
    member.client_scheme = "https"
    member.start(wait=False)
    try:
        env = dict(os.environ, ETCDCTL_API="3")
        env.pop("ETCDCTL_ENDPOINTS", None)
        deadline = time.monotonic() + 30
        while True:
            proc = subprocess.run(
                [
                    require_tool("etcdctl"),
                    f"--endpoints=https://{member.endpoint}",
                    "--insecure-skip-tls-verify",
                    "--insecure-transport=false",  # etcdctl 3.4 needs it with the flag above
                    "--dial-timeout=2s",
                    "put",
                    "k",
                    "v",
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
            if proc.returncode == 0:
                break
            assert time.monotonic() < deadline, proc.stderr + member.log_tail()
            time.sleep(0.3)
        fixtures = member.data_dir / "fixtures" / "client"
        assert (fixtures / "cert.pem").exists() and (fixtures / "key.pem").exists()
    finally:
        member.stop()
