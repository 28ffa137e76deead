"""Peer TLS on real member processes: three members over https peer URLs with client
certificate authentication, a member whose certificate comes from another CA, auto TLS, and
etcd's start-up messages for bad TLS flags (compared with etcd 3.4 itself)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

import pytest
import trustme

from etcdpy.testing.cluster_procs import ClusterMember, ProcessCluster
from etcdpy.testing.processes import etcdpy_command, free_port
from tests.external_tools import Etcdctl, eventually, require_etcd_source, require_tool
from tests.tls_certs import write_member_certs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.first_pass_only(
        "peer TLS is the core's peer transport and its start-up checks; no front-end takes part"
    ),
]

WAIT_SECONDS = 20.0


_eventually = functools.partial(eventually, timeout=WAIT_SECONDS)


def _ctl(member: ClusterMember) -> Etcdctl:
    return Etcdctl(member.endpoint)


def _log(member: ClusterMember) -> str:
    assert member.log_path is not None
    return member.log_path.read_text(errors="replace")


def _write_here_read_there(writer: ClusterMember, reader: ClusterMember, value: str) -> None:
    _ctl(writer).out("put", "tls-key", value)
    assert _ctl(reader).out("get", "tls-key", "--print-value-only").strip() == value


def test_three_members_over_https_with_client_certificates(tmp_path: Path) -> None:
    ca = trustme.CA()
    cluster = ProcessCluster.etcdpy(tmp_path, peer_scheme="https")
    for m in cluster.members:
        m.extra_args += write_member_certs(ca, tmp_path / "certs", m.name).peer_args()
    with cluster:
        cluster.leader()
        _write_here_read_there(cluster.members[0], cluster.members[1], "over-tls")
        _write_here_read_there(cluster.members[2], cluster.members[0], "again")
        peer_urls = [m["peerURLs"][0] for m in _ctl(cluster.members[1]).json("member", "list")[
            "members"
        ]]  # fmt: skip
        assert all(url.startswith("https://127.0.0.1:") for url in peer_urls)
        assert '"starting with peer TLS"' in _log(cluster.members[0])
        # a member joining over https asks a peer for the member list first (peer_rpc)
        joiner = cluster.add_member(tmp_path, "m3")
        joiner.extra_args += write_member_certs(ca, tmp_path / "certs", "m3").peer_args()
        _ctl(cluster.members[0]).member_add("m3", f"--peer-urls={joiner.peer_url}", "--learner")
        joiner.start()
        _eventually(
            lambda: (
                _ctl(joiner).out("get", "tls-key", "--consistency=s", "--print-value-only")
                == "again\n"
            )
        )


def _agree_on_leader(members: list[ClusterMember]) -> int:
    def agreed() -> int:
        leaders = {m.status(timeout=0.5)[1] for m in members}
        return leaders.pop() if len(leaders) == 1 and 0 not in leaders else 0

    leader: int = _eventually(agreed)
    return leader


def test_a_member_with_a_certificate_from_another_ca_never_joins(tmp_path: Path) -> None:
    ca, rogue = trustme.CA(), trustme.CA()
    cluster = ProcessCluster.etcdpy(tmp_path, peer_scheme="https")
    good, bad = cluster.members[:2], cluster.members[2]
    for m in good:
        m.extra_args += write_member_certs(ca, tmp_path / "certs", m.name).peer_args()
    # It trusts the cluster's CA, but its own certificate is signed by another one.
    bad.extra_args += write_member_certs(
        rogue, tmp_path / "certs", bad.name, trusted=ca
    ).peer_args()
    cluster.start(wait_for=2)  # the other one never joins, so it never serves clients
    try:
        _agree_on_leader(good)
        _write_here_read_there(good[0], good[1], "two-of-three")
        _write_here_read_there(good[1], good[0], "still-two")
        assert bad.running
        # Never published, it serves no client (as etcd): it has never heard of a leader.
        assert '"ready to serve client requests"' not in _log(bad)
        # the good members say why they refuse it; the bad one says it is refused
        assert any(
            '"rejected peer connection"' in line and "certificate verify failed" in line
            for m in good
            for line in _log(m).splitlines()
        )
        assert '"cannot connect to peer over TLS"' in _log(bad)
    finally:
        cluster.stop()


def test_peer_cert_allowed_cn_as_in_etcds_e2e_test(tmp_path: Path) -> None:
    """etcd's e2e TestEtcdPeerCNAuth, with its certificates: two members whose certificates
    carry the allowed CN form the cluster; the third (another CN, and allowing only its own) is
    refused and prints Go's words for it, which the e2e test waits for. The certificates say
    C=USA, which the cryptography package warns about: nothing but JSON log lines is printed."""
    fixtures = require_etcd_source("integration/fixtures/ca.crt").parent
    cluster = ProcessCluster.etcdpy(tmp_path, peer_scheme="https")
    for i, m in enumerate(cluster.members):
        cert, cn = ("server", "example.com") if i < 2 else ("server2", "example2.com")
        m.extra_args += [
            f"--peer-cert-file={fixtures / f'{cert}.crt'}",
            f"--peer-key-file={fixtures / f'{cert}.key.insecure'}",
            f"--peer-trusted-ca-file={fixtures / 'ca.crt'}",
            "--peer-client-cert-auth",
            f"--peer-cert-allowed-cn={cn}",
        ]
    good, bad = cluster.members[:2], cluster.members[2]
    cluster.start(wait_for=2)
    try:
        _agree_on_leader(good)
        _write_here_read_there(good[0], good[1], "allowed-cn")
        _eventually(lambda: "remote error: tls: bad certificate" in _log(bad))
        assert '"ready to serve client requests"' not in _log(bad)
        # the refusing side says why (the dialler checks the listener's certificate first)
        assert "client certificate authentication failed" in _log(good[0])
    finally:
        cluster.stop()
    for m in cluster.members:
        for line in _log(m).splitlines():
            assert line.startswith("{"), f"{m.name} printed a line that is not JSON: {line}"


def test_three_members_with_peer_auto_tls(tmp_path: Path) -> None:
    cluster = ProcessCluster.etcdpy(tmp_path, extra_args=["--peer-auto-tls"], peer_scheme="https")
    with cluster:
        cluster.leader()
        _write_here_read_there(cluster.members[1], cluster.members[2], "auto")
    for m in cluster.members:
        assert (m.data_dir / "fixtures" / "peer" / "cert.pem").exists()
        assert (m.data_dir / "fixtures" / "peer" / "key.pem").exists()


# -- etcd's messages for TLS flags that cannot work ----------------------------------------------


def _start_and_fail(binary: list[str], tmp: Path, extra: list[str]) -> tuple[int, str]:
    """Exit code and the error of the last JSON log line of a member that refuses to start."""
    peer = f"https://127.0.0.1:{free_port()}"
    client = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    proc = subprocess.run(
        [
            *binary,
            "--name=a",
            f"--data-dir={tmp}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=a={peer}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            "--logger=zap",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("{")]
    error = str(json.loads(lines[-1]).get("error", "")) if lines else proc.stderr
    return proc.returncode, error.replace(peer.removeprefix("https://"), "<peer>")


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--peer-cert-file=/nope.pem", "--peer-key-file=/nope-key.pem"],
        ["--peer-cert-file=/nope.pem"],
        ["--peer-cert-file=/etc/hostname", "--peer-key-file=/etc/hostname"],
    ],
    ids=["no-cert", "missing-file", "no-key", "not-pem"],
)
def test_bad_peer_tls_flags_get_etcds_message(tmp_path: Path, extra: list[str]) -> None:
    etcd = require_tool("etcd")
    theirs = _start_and_fail([etcd], tmp_path / "etcd", extra)
    ours = _start_and_fail(etcdpy_command(), tmp_path / "etcdpy", extra)
    assert theirs[0] == 1 and theirs[1]
    assert ours == theirs
