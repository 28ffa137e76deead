"""Peer TLS: etcd's start-up checks and messages, the self-signed certificate of auto TLS, and
the peer transport over TLS (client certificates, wrong CA, CN, SAN, CRL, plain vs TLS)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from structlog.testing import capture_logs

from etcdpy.config import ServerConfig, parse_urls
from etcdpy.peer import transport
from etcdpy.peer.tls import PeerTLS, load_peer_tls
from etcdpy.peer.transport import PeerTransport, peer_rpc
from etcdpy.raft.types import Message, MessageType, Snapshot, SnapshotMetadata, SnapshotStatus
from etcdpy.testing.processes import free_port
from etcdpy.tls.checks import common_name
from etcdpy.tls.info import TLSSetupError
from etcdpy.tls.self_cert import self_cert
from tests.external_tools import require_etcd_source
from tests.peer.test_transport import CLUSTER, Recorder, _app, _until
from tests.tls_certs import MemberCerts, write_member_certs

A, B = 0xA, 0xB


def _config(tmp: Path, scheme: str = "https", **fields: Any) -> ServerConfig:
    url = f"{scheme}://127.0.0.1:{free_port()}"
    return ServerConfig(
        name="a",
        data_dir=str(tmp / "a.etcd"),
        listen_peer_urls=parse_urls(url, peer=True),
        initial_advertise_peer_urls=parse_urls(url, peer=True),
        **fields,
    )


def _tls(certs: MemberCerts, tmp: Path, **fields: Any) -> PeerTLS:
    return load_peer_tls(
        _config(
            tmp,
            peer_cert_file=str(certs.cert),
            peer_key_file=str(certs.key),
            peer_trusted_ca_file=str(certs.ca),
            peer_client_cert_auth=True,
            **fields,
        ),
        quiet=True,
    )


# -- start-up checks, with etcd 3.4's messages ---------------------------------------------------


def test_https_peer_url_without_certificate_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    url = cfg.listen_peer_urls[0]
    with pytest.raises(TLSSetupError) as info:
        load_peer_tls(cfg)
    assert str(info.value) == (
        f"cannot listen on TLS for 127.0.0.1:{url.port}: KeyFile and CertFile are not presented"
    )


def test_missing_or_half_or_bad_key_pair_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    certs = write_member_certs(ca, tmp_path, "a")
    other = write_member_certs(ca, tmp_path, "b")
    cases = [
        ({"peer_cert_file": "/nope.pem", "peer_key_file": "/nope-key.pem"},
         "open /nope.pem: no such file or directory"),
        ({"peer_cert_file": str(certs.cert)},
         f"KeyFile and CertFile must both be present[key: , cert: {certs.cert}]"),
        ({"peer_cert_file": "/etc/hostname", "peer_key_file": "/etc/hostname"},
         "tls: failed to find any PEM data in certificate input"),
        ({"peer_cert_file": str(certs.cert), "peer_key_file": str(other.key)},
         "tls: private key does not match public key"),
        ({"peer_cert_file": str(certs.cert), "peer_key_file": str(certs.key),
          "peer_trusted_ca_file": "/nope-ca.pem"},
         "open /nope-ca.pem: no such file or directory"),
        ({"peer_cert_file": str(certs.cert), "peer_key_file": str(certs.key),
          "peer_cert_allowed_cn": "a", "peer_cert_allowed_hostname": "b"},
         'AllowedCN and AllowedHostname are mutually exclusive (cn="a", hostname="b")'),
    ]  # fmt: skip
    for fields, message in cases:
        with pytest.raises(TLSSetupError) as info:
            load_peer_tls(_config(tmp_path, **fields))
        assert str(info.value) == message


def test_http_peer_url_ignores_certificates_with_etcds_warnings(tmp_path: Path) -> None:
    certs = write_member_certs(trustme.CA(), tmp_path, "a")
    cfg = _config(
        tmp_path,
        scheme="http",
        peer_cert_file=str(certs.cert),
        peer_key_file=str(certs.key),
        peer_client_cert_auth=True,
    )
    with capture_logs() as logs:
        tls = load_peer_tls(cfg)
    events = [e["event"] for e in logs]
    assert tls.server is None
    assert "scheme is HTTP while key and cert files are present; ignoring key and cert files" in (
        events
    )
    assert any("--peer-client-cert-auth is enabled" in e for e in events)


def test_certificate_files_win_over_auto_tls(tmp_path: Path) -> None:
    certs = write_member_certs(trustme.CA(), tmp_path, "a")
    cfg = _config(
        tmp_path, peer_cert_file=str(certs.cert), peer_key_file=str(certs.key), peer_auto_tls=True
    )
    with capture_logs() as logs:
        tls = load_peer_tls(cfg)
    assert "ignoring peer auto TLS since certs given" in [e["event"] for e in logs]
    assert tls.info.cert_file == str(certs.cert) and tls.verifies_peers
    assert not (tmp_path / "a.etcd" / "fixtures").exists()


# -- auto TLS -------------------------------------------------------------------------------------


def test_self_cert_has_etcds_properties_and_is_reused(tmp_path: Path) -> None:
    directory = tmp_path / "fixtures" / "peer"
    cert_path, key_path = self_cert(directory, ["127.0.0.1", "example.test"])
    assert (cert_path.name, key_path.name) == ("cert.pem", "key.pem")
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp521r1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "etcd"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=365)
    assert cert.serial_number.bit_length() <= 128
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["example.test"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA512)
    before = cert_path.read_bytes()
    self_cert(directory, ["10.0.0.1"])
    assert cert_path.read_bytes() == before  # both files there: kept as they are


def test_auto_tls_makes_the_certificate_under_the_data_dir(tmp_path: Path) -> None:
    tls = load_peer_tls(_config(tmp_path, peer_auto_tls=True))
    fixtures = tmp_path / "a.etcd" / "fixtures" / "peer"
    assert tls.info.cert_file == str(fixtures / "cert.pem")
    assert tls.info.self_cert and not tls.verifies_peers
    assert tls.server is not None and tls.client.verify_mode == ssl.CERT_NONE


# -- the transport over TLS ---------------------------------------------------------------------


async def _tls_pair(
    tmp: Path, tls_a: PeerTLS | None, tls_b: PeerTLS | None, scheme_b: str, dial_scheme: str
) -> tuple[PeerTransport, Recorder, PeerTransport, Recorder, str]:
    port = free_port()
    # a unix(s) URL names the socket file "b.sock:PORT" in the working directory
    host = "b.sock" if scheme_b.startswith("unix") else "127.0.0.1"
    url_b = f"{scheme_b}://{host}:{port}"
    (tmp / "ra").mkdir(exist_ok=True)
    (tmp / "rb").mkdir(exist_ok=True)
    rec_a, rec_b = Recorder(tmp / "ra"), Recorder(tmp / "rb")
    ta = PeerTransport(A, CLUSTER, rec_a, tls_a)
    tb = PeerTransport(B, CLUSTER, rec_b, tls_b)
    await tb.listen([url_b])
    ta.set_peer(B, [f"{dial_scheme}://{host}:{port}"])
    return ta, rec_a, tb, rec_b, url_b


Scenario = Callable[[PeerTransport, Recorder, PeerTransport, Recorder, str], Awaitable[None]]


def _run_pair(tmp: Path, tls_a: PeerTLS | None, tls_b: PeerTLS | None, body: Scenario,
              scheme_b: str = "https", dial_scheme: str = "") -> None:  # fmt: skip
    async def run() -> None:
        ta, ra, tb, rb, url = await _tls_pair(tmp, tls_a, tls_b, scheme_b, dial_scheme or scheme_b)
        try:
            await body(ta, ra, tb, rb, url)
        finally:
            await ta.stop()
            await tb.stop()

    asyncio.run(run())


async def _delivered(ta: PeerTransport, rb: Recorder) -> None:
    for i in range(20):
        ta.send([_app(B, i)])
    await _until(lambda: len(rb.messages) == 20, rb.arrived)
    assert [m.index for m in rb.messages] == list(range(20))


async def _refused(ta: PeerTransport, rb: Recorder, seconds: float = 1.0) -> None:
    """Nothing arrives while the dialler keeps retrying (it must not crash)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        ta.send([_app(B, 1)])
        await asyncio.sleep(0.05)
    assert rb.messages == []
    assert not ta._peers[B].task.done()  # still dialling, with backoff
    handler = ta.handler
    assert isinstance(handler, Recorder) and handler.unreachable.count(B) >= 2


def test_messages_and_rpc_over_tls_with_client_certificates(tmp_path: Path) -> None:
    ca = trustme.CA()
    tls_a = _tls(write_member_certs(ca, tmp_path, "a"), tmp_path)
    tls_b = _tls(write_member_certs(ca, tmp_path, "b"), tmp_path)

    async def body(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                   url: str) -> None:  # fmt: skip
        await _delivered(ta, rb)
        assert await peer_rpc([url], {"op": "x"}, tls=tls_a) == {"echo": {"op": "x"}}

    _run_pair(tmp_path, tls_a, tls_b, body)


def test_a_client_certificate_from_another_ca_is_refused_and_logged(tmp_path: Path) -> None:
    ca, rogue = trustme.CA(), trustme.CA()
    # a trusts the right CA but its own certificate comes from another one
    tls_a = _tls(write_member_certs(rogue, tmp_path, "a", trusted=ca), tmp_path)
    tls_b = _tls(write_member_certs(ca, tmp_path, "b"), tmp_path)

    async def body(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                   _url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    with capture_logs() as logs:
        _run_pair(tmp_path, tls_a, tls_b, body)
    rejected = [e for e in logs if e["event"] == "rejected peer connection"]
    assert rejected and "certificate verify failed" in rejected[0]["error"]
    dialled = [e for e in logs if e["event"] == "cannot connect to peer over TLS"]
    assert dialled and dialled[0]["remote_peer_id"] == "b"
    assert len(rejected) == 1  # one line per reason, not one per retry


def test_a_server_certificate_from_another_ca_is_not_trusted(tmp_path: Path) -> None:
    ca, rogue = trustme.CA(), trustme.CA()
    tls_a = _tls(write_member_certs(ca, tmp_path, "a"), tmp_path)
    tls_b = _tls(write_member_certs(rogue, tmp_path, "b", trusted=ca), tmp_path)

    async def body(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                   _url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    with capture_logs() as logs:
        _run_pair(tmp_path, tls_a, tls_b, body)
    dialled = [e for e in logs if e["event"] == "cannot connect to peer over TLS"]
    assert dialled and "certificate verify failed" in dialled[0]["error"]


def test_plain_dialler_to_a_tls_listener_fails_cleanly(tmp_path: Path) -> None:
    ca = trustme.CA()
    tls_b = _tls(write_member_certs(ca, tmp_path, "b"), tmp_path)

    async def body(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                   url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    with capture_logs() as logs:  # a thinks b's peer URL is http
        _run_pair(tmp_path, None, tls_b, body, dial_scheme="http")
    rejected = [e for e in logs if e["event"] == "rejected peer connection"]
    assert len(rejected) == 1  # once per reason, although a retries
    assert "the peer does not speak TLS: is its peer URL http?" in rejected[0]["error"]
    dialled = [e for e in logs if e["event"] == "cannot connect to peer over TLS"]
    assert dialled[0]["error"] == (
        "the peer's listener is https (it offers TLS) but our URL for it is http"
    )


def test_tls_dialler_to_a_plain_listener_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "TLS_HANDSHAKE_TIMEOUT", 0.2)
    ca = trustme.CA()
    tls_a = _tls(write_member_certs(ca, tmp_path, "a"), tmp_path)

    async def body(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                   url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    with capture_logs() as logs:  # a thinks b's peer URL is https
        _run_pair(tmp_path, tls_a, None, body, scheme_b="http", dial_scheme="https")
    dialled = [e for e in logs if e["event"] == "cannot connect to peer over TLS"]
    assert dialled[0]["error"].startswith("the peer did not offer TLS: is its peer URL http")


def test_auto_tls_members_talk_without_verifying(tmp_path: Path) -> None:
    tls_a = load_peer_tls(_config(tmp_path / "a", peer_auto_tls=True), quiet=True)
    tls_b = load_peer_tls(_config(tmp_path / "b", peer_auto_tls=True), quiet=True)

    async def body(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                   _url: str) -> None:  # fmt: skip
        await _delivered(ta, rb)

    _run_pair(tmp_path, tls_a, tls_b, body)


def test_allowed_cn_is_checked(tmp_path: Path) -> None:
    ca = trustme.CA()
    good = write_member_certs(ca, tmp_path, "a", common_name="etcd-peer")
    bad = write_member_certs(ca, tmp_path, "c", common_name="intruder")
    b = write_member_certs(ca, tmp_path, "b", common_name="etcd-peer")
    tls_b = _tls(b, tmp_path, peer_cert_allowed_cn="etcd-peer")

    async def accepted(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                       _url: str) -> None:  # fmt: skip
        await _delivered(ta, rb)

    async def refused(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                      _url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    _run_pair(tmp_path, _tls(good, tmp_path), tls_b, accepted)
    with capture_logs() as logs:
        _run_pair(tmp_path, _tls(bad, tmp_path), tls_b, refused)
    rejected = [e for e in logs if e["event"] == "rejected peer connection"]
    assert rejected[0]["error"] == "client certificate authentication failed"
    # the refused dialler hears it in Go's words (etcd's e2e tests wait for them)
    dialled = [e for e in logs if e["event"] == "cannot connect to peer over TLS"]
    assert dialled[0]["error"].startswith("remote error: tls: bad certificate (")


def test_a_dialler_refusing_the_listeners_cn_goes_first_as_in_go(tmp_path: Path) -> None:
    """Go's client checks the server's certificate inside the handshake, before the server
    sees the client's: the listener logs the dialler's bad_certificate alert, not its own
    verdict on the dialler's certificate (etcd's e2e TestEtcdPeerCNAuth waits for that)."""
    ca = trustme.CA()
    a = write_member_certs(ca, tmp_path, "a", common_name="example.com")
    b = write_member_certs(ca, tmp_path, "b", common_name="example2.com")
    tls_a = _tls(a, tmp_path, peer_cert_allowed_cn="example.com")
    tls_b = _tls(b, tmp_path, peer_cert_allowed_cn="example2.com")

    async def refused(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                      _url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    with capture_logs() as logs:
        _run_pair(tmp_path, tls_a, tls_b, refused)
    dialled = [e for e in logs if e["event"] == "cannot connect to peer over TLS"]
    assert dialled[0]["error"] == "client certificate authentication failed"
    rejected = [e for e in logs if e["event"] == "rejected peer connection"]
    assert [e["error"] for e in rejected] == [
        "remote error: tls: bad certificate (the peer refused our certificate; its log says why)"
    ]


def test_etcds_test_certificates_are_read_without_warnings() -> None:
    """They say C=USA (X.509 wants two letters): cryptography warns, Go does not."""
    fixture = require_etcd_source("integration/fixtures/server2.crt")
    cert = x509.load_pem_x509_certificate(fixture.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert common_name(cert) == "example2.com"


def test_unixs_peer_urls_carry_tls_on_unix_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ca = trustme.CA()
    # the dialler checks the listener's certificate against the URL's host, as Go does
    certs_a = write_member_certs(ca, tmp_path, "a", hosts=("a.sock",))
    certs_b = write_member_certs(ca, tmp_path, "b", hosts=("b.sock",))
    skip = {"experimental_peer_skip_client_san_verification": True}
    tls_a, tls_b = _tls(certs_a, tmp_path, **skip), _tls(certs_b, tmp_path, **skip)

    async def delivered(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                        url: str) -> None:  # fmt: skip
        assert url.startswith("unixs://b.sock:") and os.path.exists(url[len("unixs://") :])
        await _delivered(ta, rb)
        assert await peer_rpc([url], {"op": "x"}, tls=tls_a) == {"echo": {"op": "x"}}

    _run_pair(tmp_path, tls_a, tls_b, delivered, scheme_b="unixs")
    assert not list(tmp_path.glob("b.sock:*"))  # removed on stop

    async def refused(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                      _url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    # A unix socket's dialler has no address to match a client certificate's SANs: etcd's
    # check fails on it (net.SplitHostPort), and so does etcdpy's.
    with capture_logs() as logs:
        _run_pair(tmp_path, tls_a, _tls(certs_b, tmp_path), refused, scheme_b="unixs")
    rejected = [e for e in logs if e["event"] == "rejected peer connection"]
    assert rejected[0]["error"] == "missing port in address"


def test_client_certificate_must_name_the_dialling_address(tmp_path: Path) -> None:
    ca = trustme.CA()
    elsewhere = write_member_certs(ca, tmp_path, "a", hosts=("10.0.0.1",))
    b = write_member_certs(ca, tmp_path, "b")

    async def refused(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                      _url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    async def accepted(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                       _url: str) -> None:  # fmt: skip
        await _delivered(ta, rb)

    with capture_logs() as logs:
        _run_pair(tmp_path, _tls(elsewhere, tmp_path), _tls(b, tmp_path), refused)
    rejected = [e for e in logs if e["event"] == "rejected peer connection"]
    assert rejected[0]["error"] == "x509: certificate is valid for 10.0.0.1, not 127.0.0.1"
    skip = _tls(b, tmp_path, experimental_peer_skip_client_san_verification=True)
    _run_pair(tmp_path, _tls(elsewhere, tmp_path), skip, accepted)


def _crl_revoking(ca: trustme.CA, cert_path: Path, path: Path) -> Path:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    serial = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
    now = datetime.datetime.now(datetime.UTC)
    revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .sign(ca_key, hashes.SHA256())
    )
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_revoked_client_certificate_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    a = write_member_certs(ca, tmp_path, "a")
    crl = _crl_revoking(ca, a.cert, tmp_path / "crl.pem")
    tls_b = _tls(write_member_certs(ca, tmp_path, "b"), tmp_path, peer_crl_file=str(crl))

    async def refused(ta: PeerTransport, _ra: Recorder, _tb: PeerTransport, rb: Recorder,
                      _url: str) -> None:  # fmt: skip
        await _refused(ta, rb)

    with capture_logs() as logs:
        _run_pair(tmp_path, _tls(a, tmp_path), tls_b, refused)
    rejected = [e for e in logs if e["event"] == "rejected peer connection"]
    assert rejected[0]["error"].startswith("transport: certificate serial ")
    assert rejected[0]["error"].endswith(" revoked")


def test_snapshot_is_streamed_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    tls_a = _tls(write_member_certs(ca, tmp_path, "a"), tmp_path)
    tls_b = _tls(write_member_certs(ca, tmp_path, "b"), tmp_path)

    async def body(ta: PeerTransport, ra: Recorder, _tb: PeerTransport, rb: Recorder,
                   _url: str) -> None:  # fmt: skip
        snap = Snapshot(b"", SnapshotMetadata(index=77, term=3))
        ta.send([Message(MessageType.SNAP, to=B, from_=A, term=3, snapshot=snap)])
        await _until(lambda: bool(ra.snap_status), ra.arrived, timeout=10)
        assert ra.snap_status == [(B, SnapshotStatus.FINISH)]
        [(_message, data)] = rb.snapshots
        assert data == b"backend-bytes" * 300_000  # several 1 MiB chunks

    _run_pair(tmp_path, tls_a, tls_b, body)
