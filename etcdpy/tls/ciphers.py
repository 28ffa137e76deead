"""``--cipher-suites``: Go's cipher suite names (etcd's ``tlsutil.GetCipherSuite``) in OpenSSL's.

Go's list (1.19, the one etcd 3.4.23 is built with) holds TLS 1.2 suites and the three TLS 1.3
ones. Go applies the setting to TLS 1.2 only (TLS 1.3 always offers its three), and so does
OpenSSL's cipher string: the TLS 1.3 names are accepted and change nothing, as in etcd. A list
of only TLS 1.3 names leaves TLS 1.2 no suite, so TLS 1.2 handshakes fail, as they do in etcd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from etcdpy.config import ConfigError, go_quote

__all__ = ["TLS13_ONLY", "openssl_ciphers"]

# Go name -> OpenSSL name (None: a TLS 1.3 suite, always on).
GO_TO_OPENSSL: Final[dict[str, str | None]] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    # Go's InsecureCipherSuites(): etcd accepts them too
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    # the short names etcd adds
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

# What openssl_ciphers answers for a list of TLS 1.3 suites only: no TLS 1.2 suite at all.
TLS13_ONLY: Final = ""


def openssl_ciphers(go_names: Sequence[str]) -> str | None:
    """The OpenSSL cipher string for ``--cipher-suites`` (None: the default, nothing given).

    Raises ConfigError with etcd's message for a name Go does not know."""
    if not go_names:
        return None
    chosen: list[str] = []
    for name in go_names:
        if name not in GO_TO_OPENSSL:
            raise ConfigError(f"unexpected TLS cipher suite {go_quote(name)}")
        openssl = GO_TO_OPENSSL[name]
        if openssl is not None and openssl not in chosen:
            chosen.append(openssl)
    return ":".join(chosen) if chosen else TLS13_ONLY
