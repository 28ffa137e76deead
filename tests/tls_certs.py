"""Certificates for peer TLS tests, made by trustme: a CA and one certificate per member."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class MemberCerts:
    cert: Path
    key: Path
    ca: Path  # the CA this member trusts

    def peer_args(self, client_cert_auth: bool = True) -> list[str]:
        args = [
            f"--peer-cert-file={self.cert}",
            f"--peer-key-file={self.key}",
            f"--peer-trusted-ca-file={self.ca}",
        ]
        if client_cert_auth:
            args.append("--peer-client-cert-auth")
        return args


def write_ca(ca: trustme.CA, directory: Path, name: str = "ca") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def write_member_certs(
    signer: trustme.CA,
    directory: Path,
    name: str,
    hosts: tuple[str, ...] = ("127.0.0.1",),
    trusted: trustme.CA | None = None,
    common_name: str | None = None,
) -> MemberCerts:
    """A key and certificate for ``hosts`` signed by ``signer``, trusting ``trusted`` or signer."""
    directory.mkdir(parents=True, exist_ok=True)
    leaf = signer.issue_cert(*hosts, common_name=common_name)
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca = write_ca(trusted or signer, directory, f"{name}-ca")
    return MemberCerts(cert, key, ca)
