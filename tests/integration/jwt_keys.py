"""RS256 key files for ``--auth-token jwt,...`` in integration tests (made with cryptography)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def jwt_auth_token(directory: Path, ttl: str = "5m") -> str:
    """Writes a fresh RSA key pair under ``directory``; returns the ``--auth-token`` value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = directory / "jwt.key"
    public = directory / "jwt.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return f"jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl={ttl}"
