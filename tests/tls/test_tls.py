"""etcdpy.tls: Go's cipher suite names, the server context that follows its files, the CN of
a verified client certificate, the CRL cache."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from etcdpy.config import ConfigError
from etcdpy.tls.checks import CertRejected, CrlCache, verified_common_name
from etcdpy.tls.ciphers import GO_TO_OPENSSL, TLS13_ONLY, openssl_ciphers
from etcdpy.tls.info import TLSInfo, server_context
from etcdpy.tls.reload import ReloadingServerContext
from tests.tls_certs import write_member_certs


def test_unknown_cipher_suite_gets_etcds_message() -> None:
    with pytest.raises(ConfigError) as info:
        openssl_ciphers(["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_NOPE"])
    assert str(info.value) == 'unexpected TLS cipher suite "TLS_NOPE"'


def test_cipher_suites_map_to_openssl_in_order() -> None:
    assert openssl_ciphers([]) is None
    given = ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"]
    assert openssl_ciphers(given) == "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305"
    assert openssl_ciphers(["TLS_AES_128_GCM_SHA256"]) == TLS13_ONLY


def test_every_modern_go_suite_is_known_to_openssl() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for go_name, openssl in GO_TO_OPENSSL.items():
        if openssl is None or "RC4" in openssl or "DES" in openssl:
            continue  # TLS 1.3 names; suites OpenSSL 3 leaves out by default
        ctx.set_ciphers(openssl)  # raises SSLError for a name OpenSSL does not know
        assert any(c["name"] == openssl for c in ctx.get_ciphers()), go_name


def test_tls13_only_suites_leave_tls12_out(tmp_path: Path) -> None:
    certs = write_member_certs(trustme.CA(), tmp_path, "s")
    info = TLSInfo(str(certs.cert), str(certs.key), cipher_suites=("TLS_AES_256_GCM_SHA384",))
    assert server_context(info).minimum_version == ssl.TLSVersion.TLSv1_3
    assert server_context(TLSInfo(str(certs.cert), str(certs.key))).minimum_version == (
        ssl.TLSVersion.TLSv1_2
    )


async def _handshake(
    server: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[x509.Certificate, str | None]:
    """(the server certificate the client saw, the client CN the server saw)."""
    seen: list[str | None] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            seen.append(verified_common_name(transport.get_extra_info("ssl_object")))
            transport.close()

    loop = asyncio.get_running_loop()
    listener = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        await reader.read()
        writer.close()
    finally:
        listener.close()
    return x509.load_der_x509_certificate(der), seen[0]


def test_new_connections_get_the_certificate_on_disk_now(tmp_path: Path) -> None:
    ca = trustme.CA()
    certs = write_member_certs(ca, tmp_path, "server")
    client_certs = write_member_certs(ca, tmp_path, "client", common_name="alice")
    info = TLSInfo(str(certs.cert), str(certs.key), str(certs.ca), client_cert_auth=True)
    contexts = ReloadingServerContext(info)
    client = ssl.create_default_context(cafile=str(certs.ca))
    client.load_cert_chain(client_certs.cert, client_certs.key)

    first, cn = asyncio.run(_handshake(contexts.listening, client))
    assert cn == "alice"
    # renewed in place, as cert-manager does: a new certificate and key in the same files
    renewed = ca.issue_cert("127.0.0.1", common_name="renewed")
    renewed.cert_chain_pems[0].write_to_path(str(certs.cert))
    renewed.private_key_pem.write_to_path(str(certs.key))
    second, cn = asyncio.run(_handshake(contexts.listening, client))
    assert cn == "alice" and contexts.reloads == 1
    assert second.serial_number != first.serial_number
    assert second.subject.rfc4514_string().startswith("CN=renewed")
    # a half-written renewal keeps the last good certificate
    certs.key.write_text("not a key")
    third, _ = asyncio.run(_handshake(contexts.listening, client))
    assert third.serial_number == second.serial_number


def test_no_client_certificate_means_no_cn(tmp_path: Path) -> None:
    certs = write_member_certs(trustme.CA(), tmp_path, "server")
    contexts = ReloadingServerContext(TLSInfo(str(certs.cert), str(certs.key)))
    client = ssl.create_default_context(cafile=str(certs.ca))
    _, cn = asyncio.run(_handshake(contexts.listening, client))
    assert cn is None
    assert verified_common_name(None) is None


def test_crl_cache_rejects_revoked_serials_and_follows_the_file(tmp_path: Path) -> None:
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "ca")])
    now = datetime.datetime.now(datetime.UTC)

    def crl(serials: list[int]) -> bytes:
        builder = x509.CertificateRevocationListBuilder().issuer_name(name)
        builder = builder.last_update(now).next_update(now + datetime.timedelta(days=1))
        for serial in serials:
            revoked = x509.RevokedCertificateBuilder().serial_number(serial)
            builder = builder.add_revoked_certificate(revoked.revocation_date(now).build())
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def cert(serial: int) -> x509.Certificate:
        builder = x509.CertificateBuilder().subject_name(name).issuer_name(name)
        builder = builder.public_key(key.public_key()).serial_number(serial)
        builder = builder.not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        return builder.sign(key, hashes.SHA256())

    path = tmp_path / "crl.pem"
    path.write_bytes(crl([0x1234]))
    cache = CrlCache(str(path))
    cache.check(cert(7))
    with pytest.raises(CertRejected, match="transport: certificate serial 1234 revoked"):
        cache.check(cert(0x1234))
    path.write_bytes(crl([0x1234, 7]))
    with pytest.raises(CertRejected, match="serial 07 revoked"):
        cache.check(cert(7))
