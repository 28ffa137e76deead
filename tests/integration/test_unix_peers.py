"""Peer URLs on unix sockets (etcd's ``unix://host:port``: the socket is the file
``host:port`` in the member's working directory): one member started the way etcd's e2e
TestEtcdUnixPeers starts it (and etcd 3.4 itself, the same way), a three-member cluster over
unix peer sockets, and one over unixs (TLS on the sockets)."""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

import pytest
import trustme

from etcdpy.testing.cluster_procs import ClusterMember, ProcessCluster
from etcdpy.testing.processes import MemberProcess, etcdpy_command, free_port
from tests.external_tools import Etcdctl, eventually, require_tool
from tests.tls_certs import write_member_certs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.first_pass_only(
        "unix peer sockets are the core's peer transport; front-ends serve clients as with tcp"
    ),
]

_eventually = functools.partial(eventually, timeout=20.0)


def _is_socket(path: Path) -> bool:
    return path.exists() and stat.S_ISSOCK(os.stat(path).st_mode)


@pytest.mark.parametrize("server", ["etcdpy", "etcd"])
def test_one_member_with_a_unix_peer_url_serves_clients(tmp_path: Path, server: str) -> None:
    binary = etcdpy_command() if server == "etcdpy" else [require_tool("etcd")]
    member = MemberProcess(
        name="e1",
        data_dir=tmp_path / "e1.etcd",
        client_port=free_port(),
        peer_port=1,
        binary=binary,
        cwd=tmp_path,
    )
    url = "unix://etcd.unix:1"  # TestEtcdUnixPeers' URL: the socket is ./etcd.unix:1
    args = ["--listen-peer-urls", url, "--initial-advertise-peer-urls", url]
    member.extra_args += [*args, "--initial-cluster", f"e1={url}"]
    member.start()
    try:
        assert _is_socket(tmp_path / "etcd.unix:1")
        ctl = Etcdctl(member.endpoint)
        ctl.out("put", "k", "over-unix")
        assert ctl.out("get", "k", "--print-value-only") == "over-unix\n"
        members = ctl.json("member", "list")["members"]
        assert [m["peerURLs"] for m in members] == [[url]]
        # etcd's member ID comes from the URL as given (its host keeps its case, a file name)
        assert f"{members[0]['ID']:x}" == "b16965eda2672782"
    finally:
        member.stop()  # etcd dies by the signal it re-raises (-15), etcdpy exits 0
    assert not (tmp_path / "etcd.unix:1").exists()  # removed on stop, as etcd does
    if server == "etcdpy":
        log = member.log_tail(1000)
        assert "enabled capabilities for version" in log
        assert "published" in log


def _write_here_read_there(writer: ClusterMember, reader: ClusterMember, value: str) -> None:
    Etcdctl(writer.endpoint).out("put", "unix-key", value)
    got = functools.partial(
        Etcdctl(reader.endpoint).out, "get", "unix-key", "--consistency=s", "--print-value-only"
    )
    _eventually(lambda: got() == f"{value}\n")


def test_three_members_over_unix_peer_sockets(tmp_path: Path) -> None:
    cluster = ProcessCluster.etcdpy(tmp_path, peer_scheme="unix")
    with cluster:
        cluster.leader()
        _write_here_read_there(cluster.members[0], cluster.members[2], "replicated")
        _write_here_read_there(cluster.members[1], cluster.members[0], "again")
        for m in cluster.members:
            assert _is_socket(tmp_path / f"{m.name}.sock:{m.peer_port}")
        peer_urls = sorted(
            m["peerURLs"][0]
            for m in Etcdctl(cluster.members[1].endpoint).json("member", "list")["members"]
        )
        assert peer_urls == sorted(m.peer_url for m in cluster.members)
        assert all(url.startswith("unix://m") for url in peer_urls)
    assert not list(tmp_path.glob("*.sock:*"))


def test_three_members_over_unixs_peer_sockets(tmp_path: Path) -> None:
    # Over unixs the dialler checks the URL's host ("m0.sock") against the certificate, as
    # Go does; a unix socket's dialler has no address to check a client certificate's SANs
    # against (etcd fails such checks too), so the members skip that check.
    ca = trustme.CA()
    cluster = ProcessCluster.etcdpy(tmp_path, peer_scheme="unixs")
    for m in cluster.members:
        certs = write_member_certs(ca, tmp_path / "certs", m.name, hosts=(f"{m.name}.sock",))
        m.extra_args += [*certs.peer_args(), "--experimental-peer-skip-client-san-verification"]
    with cluster:
        cluster.leader()
        _write_here_read_there(cluster.members[2], cluster.members[1], "over-unixs")
