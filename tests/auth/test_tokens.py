"""Tokens: simple tokens' TTL on a fake clock; JWTs (RS256, ES256, HS256) signed and checked
as etcd's jwt.go, and every forgery refused; --auth-token's options refused as etcd refuses
them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from etcdpy import errors
from etcdpy.auth.info import AuthInfo
from etcdpy.auth.tokens import InvalidAuthOptions, JwtTokens, SimpleTokens, provider


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_simple_token_lives_its_ttl_and_each_use_renews_it() -> None:
    clock = Clock()
    tokens = SimpleTokens(10, clock)
    tokens.enable()
    token = tokens.assign("alice", SimpleTokens.gen_prefix(), 7)
    assert token.endswith(".7") and len(token) == 18
    clock.now += 9
    assert tokens.info(token, 3) == AuthInfo("alice", 3)
    clock.now += 9  # 18 s after it was made, 9 after its last use
    assert tokens.info(token, 3) == AuthInfo("alice", 3)
    clock.now += 10
    assert tokens.sweep() == 1
    assert tokens.info(token, 3) is None


def test_simple_tokens_die_with_disable_and_with_their_user() -> None:
    tokens = SimpleTokens(300, Clock())
    assert tokens.assign("a", "p", 1) == "p.1"  # made while disabled: never valid
    assert tokens.info("p.1", 1) is None
    tokens.enable()
    a, b = tokens.assign("a", "x", 2), tokens.assign("b", "y", 3)
    tokens.invalidate_user("a")
    assert tokens.info(a, 1) is None and tokens.info(b, 1) is not None
    tokens.disable()
    assert tokens.info(b, 1) is None
    for bad in ("", "x", "x.y", "x.2.3", "x.-1"):
        assert tokens.info(bad, 1) is None


def _pem_pair(
    tmp_path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: str
) -> tuple[Path, Path]:
    priv = tmp_path / f"{name}.key"
    pub = tmp_path / f"{name}.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize("method", ["RS256", "ES256"])
def test_jwt_round_trip_and_forgeries(
    tmp_path: Path, method: str, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    key = rsa_key if method == "RS256" else ec_key
    priv, pub = _pem_pair(tmp_path, key, "k")
    clock = Clock()
    tokens = provider(f"jwt,pub-key={pub},priv-key={priv},sign-method={method},ttl=1m", 0, clock)
    assert isinstance(tokens, JwtTokens)
    token = tokens.sign("alice", 12)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {"username": "alice", "revision": 12, "exp": int(clock.now) + 60}
    assert tokens.info(token, 99) == AuthInfo("alice", 12)  # the token's revision

    # a member with the public key only verifies, and cannot sign (etcd's verify-only)
    verifier = provider(f"jwt,pub-key={pub},sign-method={method}", 0, clock)
    assert isinstance(verifier, JwtTokens) and verifier.verify_only
    assert verifier.info(token, 0) == AuthInfo("alice", 12)
    with pytest.raises(errors.EtcdError, match="verify-only key"):
        verifier.sign("alice", 1)

    other = (
        rsa.generate_private_key(65537, 2048)
        if method == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    other_priv, other_pub = _pem_pair(tmp_path, other, "other")
    stranger = provider(f"jwt,priv-key={other_priv},sign-method={method}", 0, clock)
    assert isinstance(stranger, JwtTokens)
    assert tokens.info(stranger.sign("alice", 12), 0) is None  # another key

    header, _payload, signature = token.split(".")
    forged_payload = _b64(json.dumps({"username": "root", "revision": 12, "exp": 2**40}).encode())
    assert tokens.info(f"{header}.{forged_payload}.{signature}", 0) is None  # bad signature
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    assert tokens.info(f"{none_header}.{forged_payload}.", 0) is None  # alg none
    hs = jwt.encode(
        {"username": "root", "revision": 1, "exp": 2**40}, pub.read_bytes().decode()[:32], "HS256"
    )
    assert tokens.info(hs, 0) is None  # another algorithm
    assert tokens.info("garbage", 0) is None

    clock.now += 61
    assert tokens.info(token, 0) is None  # expired
    del other_pub


def test_hmac_jwt(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef")
    tokens = provider(f"jwt,priv-key={secret},sign-method=HS256", 0, Clock())
    assert isinstance(tokens, JwtTokens)
    assert tokens.info(tokens.sign("bob", 3), 0) == AuthInfo("bob", 3)


def test_a_jwt_without_the_claims_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef")
    tokens = provider(f"jwt,priv-key={secret},sign-method=HS256", 0, Clock())
    assert isinstance(tokens, JwtTokens)
    key = secret.read_bytes()
    for claims in (
        {"username": "bob", "revision": 1},  # no exp
        {"revision": 1, "exp": 2**40},
        {"username": "bob", "exp": 2**40},
        {"username": 5, "revision": 1, "exp": 2**40},
        {"username": "bob", "revision": "1", "exp": 2**40},
    ):
        assert tokens.info(jwt.encode(claims, key, "HS256"), 0) is None


def test_bad_options_get_etcds_messages(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rsa_priv, rsa_pub = _pem_pair(tmp_path, rsa_key, "rsa")
    _ec_priv, ec_pub = _pem_pair(tmp_path, ec_key, "ec")
    other_priv, other_pub = _pem_pair(tmp_path, rsa.generate_private_key(65537, 2048), "o")
    cases = {
        "jwt,sign-method=RS256": "auth: missing key data",
        "jwt,sign-method=HS256": "auth: missing key data",
        "jwt,sign-method=RS256,priv-key=/nonexistent": "auth: invalid auth options",
        f"jwt,sign-method=RS256,priv-key={rsa_priv},pub-key={other_pub}": (
            "auth: public and private keys don't match"
        ),
        f"jwt,sign-method=ES256,pub-key={rsa_pub}": "auth: invalid auth options",
        "jwt,sign-method=NOPE": "auth: invalid auth options",
        "bogus": "auth: invalid auth options",
    }
    for options, message in cases.items():
        with pytest.raises(InvalidAuthOptions) as info:
            provider(options, 0, Clock())
        assert str(info.value).startswith(message), options
    assert isinstance(provider("simple", 0, Clock()), SimpleTokens)
    assert isinstance(provider(f"jwt,sign-method=ES256,pub-key={ec_pub}", 0, Clock()), JwtTokens)
    del other_priv


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_verified_jwt_is_checked_once_and_still_expires(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    priv, pub = _pem_pair(tmp_path, rsa_key, "k")
    clock = Clock()
    tokens = provider(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=1m", 0, clock)
    assert isinstance(tokens, JwtTokens)
    token = tokens.sign("alice", 3)
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    for _ in range(3):
        assert tokens.info(token, 0) == AuthInfo("alice", 3)
    assert decoded == [token]  # the signature was checked once
    header, _payload, signature = token.split(".")
    forged = _b64(json.dumps({"username": "root", "revision": 3, "exp": 2**40}).encode())
    for _ in range(2):
        assert tokens.info(f"{header}.{forged}.{signature}", 0) is None
    assert len(decoded) == 3  # a refused token is never remembered
    clock.now += 61
    assert tokens.info(token, 0) is None  # a remembered token expires all the same
    assert len(decoded) == 3
