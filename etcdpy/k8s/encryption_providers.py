"""The value transformers of encryption at rest, byte for byte what kube-apiserver writes into
etcd and reads back. A stored value is ``k8s:enc:<provider>:v1:<key name>:`` followed by the
provider's bytes:

- ``aescbc``: a random 16-byte IV, then AES-CBC of the value with PKCS#7 padding;
- ``aesgcm``: a random 12-byte nonce, then AES-GCM's sealed value (tag last), with the object's
  full etcd key as the authenticated data, so a value copied to another key does not open;
- ``secretbox``: a random 24-byte nonce, then NaCl's secretbox (XSalsa20-Poly1305);
- ``identity``: the value as it is (no prefix); reading refuses values that start ``k8s:enc:``.

Reading tries, in order, every provider whose prefix the value starts with (and, inside a
provider, every key whose name matches); writing uses the first provider and its first key. A
value read by anything but the first provider and key is *stale*: ``reencrypt`` rewrites those.

The crypto is ``cryptography``'s (AES) and PyNaCl's (secretbox). Keys never appear in a repr, a
log line or an error message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from etcdpy.k8s import errors

PREFIX_AESCBC = b"k8s:enc:aescbc:v1:"
PREFIX_AESGCM = b"k8s:enc:aesgcm:v1:"
PREFIX_SECRETBOX = b"k8s:enc:secretbox:v1:"
ENCRYPTED_MARK = b"k8s:enc:"

AES_KEY_SIZES = (16, 24, 32)
SECRETBOX_KEY_SIZES = (32,)
_AES_BLOCK = 16
_GCM_NONCE = 12
_SECRETBOX_NONCE = nacl.secret.SecretBox.NONCE_SIZE  # 24
_SECRETBOX_OVERHEAD = nacl.secret.SecretBox.MACBYTES  # 16

# The API server's words (storage/value/encrypt/*, options/encryptionconfig/config.go).
SHORT_DATA = "the stored data was shorter than the required size"
NOT_BLOCK_MULTIPLE = "the stored data is not a multiple of the block size"
BAD_PKCS7_DATA = "invalid PKCS7 data (empty or not padded)"
BAD_PKCS7_PADDING = "invalid padding on input"
GCM_AUTH_FAILED = "cipher: message authentication failed"
SECRETBOX_OPEN_FAILED = "output array was not large enough for encryption"
IDENTITY_READ_ENCRYPTED = "identity transformer tried to read encrypted data"
NO_MATCHING_PREFIX = "no matching prefix found"
NO_MATCHING_AES_KEY = "no matching key was found for the provided AES transformer"
NO_MATCHING_SECRETBOX_KEY = "no matching key was found for the provided Secretbox transformer"


class TransformError(errors.InternalError):
    """A value could not be decrypted (or encrypted). ``reason`` is the API server's message;
    the error's message names the etcd key, as the API server's list does."""

    def __init__(self, key: bytes, reason: str) -> None:
        shown = key.decode("utf-8", "backslashreplace")
        super().__init__(f'unable to transform key "{shown}": {reason}')
        self.key = key
        self.reason = reason


class ProviderFailure(Exception):
    """One transformer's failure, with the API server's message (internal; keyless)."""


def aggregate(messages: Sequence[str]) -> str:
    """apimachinery's error aggregate: one message as is, several deduplicated in brackets."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


# --- the providers ---------------------------------------------------------------------------


class Transformer:
    """What each provider and prefix list does; a failure raises ProviderFailure in the API
    server's words."""

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        raise NotImplementedError

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        raise NotImplementedError


class IdentityProvider(Transformer):
    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        return plain

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        # JSON starts with "{", protobuf with "k8s\x00"; "k8s:enc:" is encrypted data.
        if stored.startswith(ENCRYPTED_MARK):
            raise ProviderFailure(IDENTITY_READ_ENCRYPTED)
        return stored, False


class AesCbcProvider(Transformer):
    def __init__(self, key: bytes) -> None:
        self._algorithm = algorithms.AES(key)

    def __repr__(self) -> str:
        return "AesCbcProvider(<redacted>)"

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        iv = os.urandom(_AES_BLOCK)
        padder = padding.PKCS7(_AES_BLOCK * 8).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return iv + encryptor.update(padded) + encryptor.finalize()

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        if len(stored) < _AES_BLOCK:
            raise ProviderFailure(SHORT_DATA)
        iv, body = stored[:_AES_BLOCK], stored[_AES_BLOCK:]
        if len(body) % _AES_BLOCK:
            raise ProviderFailure(NOT_BLOCK_MULTIPLE)
        if not body:
            raise ProviderFailure(BAD_PKCS7_DATA)
        decryptor = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        unpadder = padding.PKCS7(_AES_BLOCK * 8).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize(), False
        except ValueError:
            size = padded[-1]
            raise ProviderFailure(
                BAD_PKCS7_DATA if size == 0 or size > len(padded) else BAD_PKCS7_PADDING
            ) from None


class AesGcmProvider(Transformer):
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "AesGcmProvider(<redacted>)"

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        nonce = os.urandom(_GCM_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, etcd_key)

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        if len(stored) < _GCM_NONCE:
            raise ProviderFailure(SHORT_DATA)
        try:
            return self._aead.decrypt(stored[:_GCM_NONCE], stored[_GCM_NONCE:], etcd_key), False
        except InvalidTag:
            raise ProviderFailure(GCM_AUTH_FAILED) from None


class SecretboxProvider(Transformer):
    def __init__(self, key: bytes) -> None:
        self._box = nacl.secret.SecretBox(key)

    def __repr__(self) -> str:
        return "SecretboxProvider(<redacted>)"

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        # PyNaCl's layout is the API server's: the 24-byte nonce, then tag and ciphertext.
        return bytes(self._box.encrypt(plain))

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        if len(stored) < _SECRETBOX_NONCE + _SECRETBOX_OVERHEAD:
            raise ProviderFailure(SHORT_DATA)
        try:
            return self._box.decrypt(stored), False
        except nacl.exceptions.CryptoError:
            raise ProviderFailure(SECRETBOX_OPEN_FAILED) from None


@dataclass(frozen=True)
class Prefixed:
    prefix: bytes
    transformer: Transformer


class PrefixList(Transformer):
    """The API server's prefix transformers: read with every entry whose prefix matches (an
    empty prefix, identity, is skipped when it fails), stale unless read by the first; write
    with the first."""

    def __init__(self, entries: Sequence[Prefixed], no_match: str) -> None:
        self.entries = tuple(entries)
        self._no_match = no_match

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        first = self.entries[0]
        return first.prefix + first.transformer.to_storage(plain, etcd_key)

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        failures: list[str] = []
        for index, entry in enumerate(self.entries):
            if not stored.startswith(entry.prefix):
                continue
            try:
                plain, stale = entry.transformer.from_storage(stored[len(entry.prefix) :], etcd_key)
            except ProviderFailure as failure:
                if entry.prefix:  # identity failing lets the next provider try, silently
                    failures.append(str(failure))
                continue
            return plain, stale or index != 0
        raise ProviderFailure(aggregate(failures) if failures else self._no_match)


class ResourceTransformer:
    """The transformer of one group-resource (implements ``types.ValueTransformer``): failures
    raise ``TransformError`` (an ``errors.InternalError``) naming the etcd key."""

    def __init__(self, providers: PrefixList, provider_names: Sequence[str]) -> None:
        self._providers = providers
        self.provider_names: tuple[str, ...] = tuple(provider_names)

    def __repr__(self) -> str:
        return f"ResourceTransformer(providers={list(self.provider_names)})"

    @property
    def writes_encrypted(self) -> bool:
        """Whether new values are encrypted (the first provider is not identity)."""
        return self.provider_names[0] != "identity"

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        try:
            return self._providers.to_storage(plain, etcd_key)
        except ProviderFailure as failure:
            raise TransformError(etcd_key, str(failure)) from None

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        try:
            return self._providers.from_storage(stored, etcd_key)
        except ProviderFailure as failure:
            raise TransformError(etcd_key, str(failure)) from None


# --- the configuration file ------------------------------------------------------------------
