"""The tokens that name a caller after Authenticate (etcd's auth/simple_token.go, auth/jwt.go,
auth/options.go).

- ``SimpleTokens``: a random prefix made where Authenticate is served, ``.<index>`` added at
  apply (the entry's raft index); every member keeps the token -> user map in memory, so a
  token dies with a restart. A use resets its TTL. Time comes from the ``now`` given, and
  expiry happens when ``sweep`` is called (and on use), so apply itself stays deterministic.
  Tokens are kept under their SHA-256 digest: a lookup compares digests, never the secret.
- ``JwtTokens``: signed with PyJWT, claims as etcd's (username, revision, exp); checked by any
  member or front-end without a round trip. A member given only the public key verifies but
  cannot sign (etcd's verify-only mode).

``provider(options, ttl_seconds, now)`` builds one from ``--auth-token`` as etcd parses it,
raising ``InvalidAuthOptions`` with etcd's messages; ``verifier`` builds what a front-end
process checks tokens with (a JWT verify-only; simple tokens it cannot check).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from etcdpy import errors
from etcdpy.auth.info import AuthInfo
from etcdpy.config import ConfigError, parse_auth_token

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SIMPLE_TOKEN_LENGTH = 16
DEFAULT_SIMPLE_TTL = 300.0  # etcd's simpleTokenTTLDefault
DEFAULT_JWT_TTL = 300.0  # etcd's DefaultTTL, 5m

# etcd's messages (auth/store.go), printed as "etcdmain: <message>" when a member refuses
INVALID_OPTS = "auth: invalid auth options"
INVALID_METHOD = "auth: invalid auth signature method"
MISSING_KEY = "auth: missing key data"
KEY_MISMATCH = "auth: public and private keys don't match"
VERIFY_ONLY = "auth: token signing attempted with verify-only key"


class InvalidAuthOptions(ConfigError):
    """``--auth-token`` names no usable token provider: the member does not start."""


class TokenProvider(Protocol):
    """What the auth store asks of a token kind (etcd's TokenProvider)."""

    # A simple token needs the prefix made before proposing and the index of the apply; a JWT
    # is signed by the member that answers Authenticate, after the apply.
    signs_after_apply: bool

    def info(self, token: str, revision: int) -> AuthInfo | None: ...

    def enable(self) -> None: ...

    def disable(self) -> None: ...

    def invalidate_user(self, username: str) -> None: ...


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class SimpleTokens:
    signs_after_apply = False

    def __init__(self, ttl: float, now: Callable[[], float]) -> None:
        self.ttl = ttl if ttl > 0 else DEFAULT_SIMPLE_TTL
        self._now = now
        self._enabled = False
        self._users: dict[bytes, str] = {}  # digest -> user name
        self._deadlines: dict[bytes, float] = {}  # digest -> when it expires

    @staticmethod
    def gen_prefix() -> str:
        return "".join(secrets.choice(LETTERS) for _ in range(SIMPLE_TOKEN_LENGTH))

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._users.clear()  # disabling auth invalidates every token
        self._deadlines.clear()

    def assign(self, username: str, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        if self._enabled:
            digest = _digest(token)
            self._users[digest] = username
            self._deadlines[digest] = self._now() + self.ttl
        return token

    def info(self, token: str, revision: int) -> AuthInfo | None:
        parts = token.split(".")
        if len(parts) != 2 or not parts[1].isdigit():
            return None
        digest = _digest(token)
        username = self._users.get(digest)
        if username is None:
            return None
        now = self._now()
        if now >= self._deadlines[digest]:
            self._drop(digest)
            return None
        self._deadlines[digest] = now + self.ttl  # a use keeps it alive
        return AuthInfo(username, revision)

    def invalidate_user(self, username: str) -> None:
        for digest in [d for d, name in self._users.items() if name == username]:
            self._drop(digest)

    def sweep(self) -> int:
        """Forgets expired tokens (etcd's TTL keeper, once a second); returns how many."""
        now = self._now()
        expired = [d for d, deadline in self._deadlines.items() if now >= deadline]
        for digest in expired:
            self._drop(digest)
        return len(expired)

    def __len__(self) -> int:
        return len(self._users)

    def _drop(self, digest: bytes) -> None:
        self._users.pop(digest, None)
        self._deadlines.pop(digest, None)


# PyJWT's algorithms by family (etcd accepts what golang-jwt's GetSigningMethod knows).
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_HMAC = ("HS256", "HS384", "HS512")


@dataclass(frozen=True, slots=True)
class JwtKeys:
    signing: Any  # a private key or the HMAC secret; None on a verify-only member
    verifying: Any


# Verified JWTs remembered (token -> caller and expiry), so that a client sending the same
# token on every call pays the signature check once: an RS256 check costs about 55 µs, an
# ES256 one about 95, against about 110 µs of server CPU for a whole Put. The cache is bounded
# (cleared when full); expiry is still checked on every use.
VERIFIED_CACHE_SIZE = 4096


class JwtTokens:
    signs_after_apply = True

    def __init__(self, method: str, keys: JwtKeys, ttl: float, now: Callable[[], float]) -> None:
        self.method = method
        self._keys = keys
        self.ttl = ttl
        self._now = now
        self._verified: dict[str, tuple[AuthInfo, float]] = {}

    @property
    def verify_only(self) -> bool:
        return self._keys.signing is None

    def without_signing(self) -> JwtTokens:
        """The same tokens, verify-only (a front-end never signs)."""
        return JwtTokens(self.method, JwtKeys(None, self._keys.verifying), self.ttl, self._now)

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def invalidate_user(self, username: str) -> None:
        pass  # a JWT lives until it expires; a user change bumps the auth revision instead

    def sign(self, username: str, revision: int) -> str:
        if self._keys.signing is None:
            raise errors.EtcdError(VERIFY_ONLY)  # etcd sends it as UNKNOWN, as here
        claims = {"username": username, "revision": revision, "exp": int(self._now() + self.ttl)}
        return jwt.encode(claims, self._keys.signing, algorithm=self.method)

    def info(self, token: str, revision: int) -> AuthInfo | None:
        known = self._verified.get(token)
        if known is not None:
            info, expires = known
            if self._now() < expires:
                return info
            del self._verified[token]
            return None
        verified = self._verify(token)
        if verified is None:
            return None
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = verified
        return verified[0]

    def _verify(self, token: str) -> tuple[AuthInfo, float] | None:
        """The token's caller and expiry if its signature, algorithm and claims hold."""
        try:
            claims = jwt.decode(
                token,
                self._keys.verifying,
                algorithms=[self.method],  # never "none", never another family
                # exp is checked below against the clock given (the wall clock in a member)
                options={"require": ["exp", "username", "revision"], "verify_exp": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        expires = claims["exp"]
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            return None
        if self._now() >= expires:
            return None
        username, token_revision = claims.get("username"), claims.get("revision")
        if not isinstance(username, str) or not isinstance(token_revision, int | float):
            return None
        if isinstance(token_revision, bool) or token_revision < 0:
            return None
        return AuthInfo(username, int(token_revision)), float(expires)


def provider(
    options: str,
    ttl_seconds: float,
    now: Callable[[], float],
    wall_clock: Callable[[], float] | None = None,
) -> SimpleTokens | JwtTokens:
    """The token provider ``--auth-token`` names (etcd's NewTokenProvider). Simple tokens
    expire on ``now`` (a monotonic clock); a JWT's exp is wall-clock time (``wall_clock``,
    ``now`` when not given), since other members and front-ends check it."""
    try:
        kind, opts = parse_auth_token(options)
    except ConfigError as exc:
        raise InvalidAuthOptions(str(exc)) from None
    if kind == "simple":
        return SimpleTokens(ttl_seconds, now)
    return _jwt_provider(opts, wall_clock or now)


def verifier(
    options: str, ttl_seconds: float, now: Callable[[], float], wall_clock: Callable[[], float]
) -> SimpleTokens | JwtTokens:
    """What a front-end process checks tokens with. Simple tokens live in the core's memory:
    the empty SimpleTokens returned knows none (the front-end hands such calls to the core). A
    JWT is verified with the public key alone: with ``pub-key`` given, the private key file is
    not even read (an HMAC secret is both, so it is)."""
    try:
        kind, opts = parse_auth_token(options)
    except ConfigError as exc:
        raise InvalidAuthOptions(str(exc)) from None
    if kind == "simple":
        return SimpleTokens(ttl_seconds, now)
    if opts.get("pub-key") and opts["sign-method"] not in _HMAC:
        opts.pop("priv-key", None)
    return _jwt_provider(opts, wall_clock).without_signing()


def _jwt_provider(opts: dict[str, str], now: Callable[[], float]) -> JwtTokens:
    ttl = DEFAULT_JWT_TTL
    if opts.get("ttl"):
        from etcdpy.config import parse_duration

        try:
            ttl = parse_duration(opts["ttl"])
        except ConfigError:
            raise InvalidAuthOptions(INVALID_OPTS) from None
    public = _read(opts.get("pub-key", ""))
    private = _read(opts.get("priv-key", ""))
    method = opts["sign-method"]  # one of JWT_SIGN_METHODS: parse_auth_token checked it
    if method in _HMAC:
        if not private:
            raise InvalidAuthOptions(MISSING_KEY)
        return JwtTokens(method, JwtKeys(private, private), ttl, now)
    return JwtTokens(method, _asymmetric_keys(method, public, private), ttl, now)


def _read(path: str) -> bytes:
    if not path:
        return b""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        # etcd: the error of ioutil.ReadFile, then ErrInvalidAuthOpts from NewTokenProvider
        raise InvalidAuthOptions(INVALID_OPTS) from exc


def _asymmetric_keys(method: str, public: bytes, private: bytes) -> JwtKeys:
    from cryptography.hazmat.primitives import serialization

    family: tuple[type[Any], ...] = (
        (rsa.RSAPrivateKey, rsa.RSAPublicKey)
        if method in _RSA
        else (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)
    )
    priv: Any = None
    pub: Any = None
    try:
        if private:
            priv = serialization.load_pem_private_key(private, password=None)
        if public:
            pub = serialization.load_pem_public_key(public)
    except (ValueError, TypeError) as exc:
        raise InvalidAuthOptions(f"{INVALID_OPTS}: {exc}") from None
    if priv is not None and not isinstance(priv, family[0]):
        raise InvalidAuthOptions(f"{INVALID_OPTS}: the private key does not suit {method}")
    if pub is not None and not isinstance(pub, family[1]):
        raise InvalidAuthOptions(f"{INVALID_OPTS}: the public key does not suit {method}")
    if priv is None:
        if pub is None:
            raise InvalidAuthOptions(MISSING_KEY)
        return JwtKeys(None, pub)  # verify only
    derived = priv.public_key()
    if pub is not None and derived.public_numbers() != pub.public_numbers():
        # etcd's check is loose (it compares with && where || was meant); etcdpy refuses
        # any mismatch.
        raise InvalidAuthOptions(KEY_MISMATCH)
    return JwtKeys(priv, derived)
