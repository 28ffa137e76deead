"""Encryption at rest as kube-apiserver does it: its ``--encryption-provider-config`` file
(``EncryptionConfiguration``, apiserver.config.k8s.io/v1), checked with the API server's
validation and messages, and the value transformers it builds, byte for byte compatible with what
an API server writes into etcd and reads back.

A stored value is ``k8s:enc:<provider>:v1:<key name>:`` followed by the provider's bytes:

- ``aescbc``: a random 16-byte IV, then AES-CBC of the value with PKCS#7 padding;
- ``aesgcm``: a random 12-byte nonce, then AES-GCM's sealed value (tag last), with the object's
  full etcd key as the authenticated data, so a value copied to another key does not open;
- ``secretbox``: a random 24-byte nonce, then NaCl's secretbox (XSalsa20-Poly1305);
- ``identity``: the value as it is (no prefix); reading refuses values that start ``k8s:enc:``.

Reading tries, in order, every provider whose prefix the value starts with (and, inside a
provider, every key whose name matches); writing uses the first provider and its first key. A
value read by anything but the first provider and key is *stale*: ``reencrypt`` rewrites those.
KMS providers are refused with a clear error: etcdpy has no KMS plugin client.

The crypto is ``cryptography``'s (AES) and PyNaCl's (secretbox). Keys never appear in a repr, a
log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from etcdpy.k8s import errors
from etcdpy.k8s.types import ValueTransformer

__all__ = [
    "API_VERSION",
    "KIND",
    "EncryptionConfig",
    "EncryptionConfigError",
    "ResourceTransformer",
    "TransformError",
]

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"

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


class EncryptionConfigError(ValueError):
    """The encryption provider configuration file cannot be used: ``str()`` names the file and
    gives the API server's message (every validation problem, joined as it joins them)."""

    def __init__(self, path: str | Path, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class TransformError(errors.InternalError):
    """A value could not be decrypted (or encrypted). ``reason`` is the API server's message;
    the error's message names the etcd key, as the API server's list does."""

    def __init__(self, key: bytes, reason: str) -> None:
        shown = key.decode("utf-8", "backslashreplace")
        super().__init__(f'unable to transform key "{shown}": {reason}')
        self.key = key
        self.reason = reason


class _Failure(Exception):
    """One transformer's failure, with the API server's message (internal; keyless)."""


def aggregate(messages: Sequence[str]) -> str:
    """apimachinery's error aggregate: one message as is, several deduplicated in brackets."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


# --- the providers ---------------------------------------------------------------------------


class _Transformer:
    """What each provider and prefix list does, raising _Failure with the API server's words."""

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        raise NotImplementedError

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        raise NotImplementedError


class _Identity(_Transformer):
    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        return plain

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        # JSON starts with "{", protobuf with "k8s\x00"; "k8s:enc:" is encrypted data.
        if stored.startswith(ENCRYPTED_MARK):
            raise _Failure(IDENTITY_READ_ENCRYPTED)
        return stored, False


class _AESCBC(_Transformer):
    def __init__(self, key: bytes) -> None:
        self._algorithm = algorithms.AES(key)

    def __repr__(self) -> str:
        return "_AESCBC(<redacted>)"

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        iv = os.urandom(_AES_BLOCK)
        padder = padding.PKCS7(_AES_BLOCK * 8).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return iv + encryptor.update(padded) + encryptor.finalize()

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        if len(stored) < _AES_BLOCK:
            raise _Failure(SHORT_DATA)
        iv, body = stored[:_AES_BLOCK], stored[_AES_BLOCK:]
        if len(body) % _AES_BLOCK:
            raise _Failure(NOT_BLOCK_MULTIPLE)
        if not body:
            raise _Failure(BAD_PKCS7_DATA)
        decryptor = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        unpadder = padding.PKCS7(_AES_BLOCK * 8).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize(), False
        except ValueError:
            size = padded[-1]
            raise _Failure(
                BAD_PKCS7_DATA if size == 0 or size > len(padded) else BAD_PKCS7_PADDING
            ) from None


class _AESGCM(_Transformer):
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "_AESGCM(<redacted>)"

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        nonce = os.urandom(_GCM_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, etcd_key)

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        if len(stored) < _GCM_NONCE:
            raise _Failure(SHORT_DATA)
        try:
            return self._aead.decrypt(stored[:_GCM_NONCE], stored[_GCM_NONCE:], etcd_key), False
        except InvalidTag:
            raise _Failure(GCM_AUTH_FAILED) from None


class _Secretbox(_Transformer):
    def __init__(self, key: bytes) -> None:
        self._box = nacl.secret.SecretBox(key)

    def __repr__(self) -> str:
        return "_Secretbox(<redacted>)"

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes:
        # PyNaCl's layout is the API server's: the 24-byte nonce, then tag and ciphertext.
        return bytes(self._box.encrypt(plain))

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        if len(stored) < _SECRETBOX_NONCE + _SECRETBOX_OVERHEAD:
            raise _Failure(SHORT_DATA)
        try:
            return self._box.decrypt(stored), False
        except nacl.exceptions.CryptoError:
            raise _Failure(SECRETBOX_OPEN_FAILED) from None


@dataclass(frozen=True)
class _Prefixed:
    prefix: bytes
    transformer: _Transformer


class _PrefixList(_Transformer):
    """The API server's prefix transformers: read with every entry whose prefix matches (an
    empty prefix, identity, is skipped when it fails), stale unless read by the first; write
    with the first."""

    def __init__(self, entries: Sequence[_Prefixed], no_match: str) -> None:
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
            except _Failure as failure:
                if entry.prefix:  # identity failing lets the next provider try, silently
                    failures.append(str(failure))
                continue
            return plain, stale or index != 0
        raise _Failure(aggregate(failures) if failures else self._no_match)


class ResourceTransformer:
    """The transformer of one group-resource (implements ``types.ValueTransformer``): failures
    raise ``TransformError`` (an ``errors.InternalError``) naming the etcd key."""

    def __init__(self, providers: _PrefixList, provider_names: Sequence[str]) -> None:
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
        except _Failure as failure:
            raise TransformError(etcd_key, str(failure)) from None

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]:
        try:
            return self._providers.from_storage(stored, etcd_key)
        except _Failure as failure:
            raise TransformError(etcd_key, str(failure)) from None


# --- the configuration file ------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    name: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class _Provider:
    kind: str  # aescbc, aesgcm, secretbox, identity
    keys: tuple[_Key, ...] = ()


@dataclass(frozen=True)
class _ResourceEntry:
    resources: tuple[str, ...]
    providers: tuple[_Provider, ...]


def _go_quote(text: str) -> str:
    """Go's %q, for the printable text the file holds."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _go_strings(values: Sequence[str]) -> str:
    """Go's %#v of a []string, as field.Invalid prints a resource list."""
    return "[]string{" + ", ".join(_go_quote(v) for v in values) + "}"


class _Problems:
    """apimachinery's field.ErrorList, printed as the API server prints it."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def required(self, path: str, detail: str) -> None:
        self.items.append(f"{path}: Required value: {detail}")

    def invalid(self, path: str, shown_value: str, detail: str) -> None:
        self.items.append(f"{path}: Invalid value: {shown_value}: {detail}")

    def forbidden(self, path: str, detail: str) -> None:
        self.items.append(f"{path}: Forbidden: {detail}")


_PROVIDER_KINDS = ("kms", "aesgcm", "aescbc", "secretbox", "identity")
_KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "top": frozenset({"apiVersion", "kind", "resources"}),
    "resource": frozenset({"resources", "providers"}),
    "provider": frozenset(_PROVIDER_KINDS),
    "keyed": frozenset({"keys"}),
    "key": frozenset({"name", "secret"}),
    "identity": frozenset(),
    "kms": frozenset({"apiVersion", "name", "cachesize", "endpoint", "timeout"}),
}

# The API server's validation messages (apis/apiserver/validation/validation_encryption.go).
MORE_THAN_ONE_PROVIDER = (
    "more than one provider specified in a single element, should split into different list "
    "elements"
)
NO_PROVIDER = (
    "provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, "
    "Identity"
)
EVENTS_GROUP = (
    "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' "
    "instead in the config file"
)
EXTENSIONS_GROUP = "'extensions' group has been removed and cannot be used for encryption"
STAR_RESOURCE = (
    "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources"
)
OVERLAP = (
    "using overlapping resources such as 'secrets' and '*.' in the same resource list is not "
    "allowed as they will be masked"
)
NON_REST_RESOURCE = "resources which do not have REST API/s cannot be encrypted"
CAPITALS = "resource name should not contain capital letters"
ACROSS_GROUPS = "encrypting the same resource across groups is not supported"
DUPLICATE_RESOURCE = "the same resource cannot be specified multiple times"
BASE64 = "secrets must be base64 encoded"
KMS_UNSUPPORTED = (
    "KMS providers are not supported by etcdpy (it has no KMS plugin client); use aescbc, "
    "aesgcm or secretbox"
)


def parse_group_resource(text: str) -> tuple[str, str]:
    """schema.ParseGroupResource: "deployments.apps" -> ("apps", "deployments"), "*." -> ("", "*")
    (group first)."""
    resource, dot, group = text.partition(".")
    return (group, resource) if dot else ("", text)


def _yaml_string(group: str, resource: str) -> str:
    """How the API server names a group-resource in its messages (grYAMLString)."""
    if not group and resource == "*":
        return "*."
    return f"{resource}.{group}" if group else resource


class _Reader:
    """Walks the decoded YAML with the API server's strictness: unknown fields and wrong types
    are decoding errors; what is there is then validated field by field."""

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.type_errors: list[str] = []

    def mapping(self, value: Any, path: str, shape: str) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.type_errors.append(f"{path or 'the file'}: expected an object")
            return None
        for name in value:
            if name not in _KNOWN_FIELDS[shape]:
                where = f"{path}.{name}" if path else str(name)
                self.unknown.append(f"unknown field {_go_quote(where)}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.type_errors.append(f"{path}: expected a list")
            return []
        return value

    def string(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.type_errors.append(f"{path}: expected a string")
            return ""
        return value


def _decode_secret(secret: str) -> bytes | None:
    # Go's base64.StdEncoding skips line breaks and wants the padding.
    try:
        return base64.b64decode(secret.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return None


def _read_keys(
    reader: _Reader, problems: _Problems, value: Any, path: str, sizes: Sequence[int]
) -> tuple[_Key, ...]:
    config = reader.mapping(value, path, "keyed") or {}
    keys_path = f"{path}.keys"
    raw_keys = reader.sequence(config.get("keys"), keys_path)
    if not raw_keys:
        problems.required(keys_path, "at least one keys is required")
        return ()
    keys: list[_Key] = []
    for index, raw in enumerate(raw_keys):
        key_path = f"{keys_path}[{index}]"
        entry = reader.mapping(raw, key_path, "key") or {}
        name = reader.string(entry.get("name"), f"{key_path}.name")
        secret_text = reader.string(entry.get("secret"), f"{key_path}.secret")
        if not name:
            problems.required(f"{key_path}.name", "name is a mandatory field for a key")
        if not secret_text:
            problems.required(f"{key_path}.secret", "secret is a mandatory field for a key")
            continue
        secret = _decode_secret(secret_text)
        if secret is None:
            problems.invalid(f"{key_path}.secret", '"REDACTED"', BASE64)
            continue
        if len(secret) not in sizes:
            expected = "[" + " ".join(str(size) for size in sizes) + "]"
            detail = f"secret is not of the expected length, got {len(secret)}, expected one of "
            problems.invalid(f"{key_path}.secret", '"REDACTED"', detail + expected)
            continue
        keys.append(_Key(name, secret))
    return tuple(keys)


def _read_provider(reader: _Reader, problems: _Problems, value: Any, path: str) -> _Provider | None:
    config = reader.mapping(value, path, "provider") or {}
    # A provider given as null (``identity:`` with nothing after it) is not set, as in Go.
    present = [kind for kind in _PROVIDER_KINDS if config.get(kind) is not None]
    if not present:
        problems.invalid(path, "{}", NO_PROVIDER)
        return None
    if len(present) > 1:
        problems.invalid(path, _go_strings(present), MORE_THAN_ONE_PROVIDER)
        return None
    kind = present[0]
    if kind == "kms":
        reader.mapping(config["kms"], f"{path}.kms", "kms")
        problems.forbidden(f"{path}.kms", KMS_UNSUPPORTED)
        return None
    if kind == "identity":
        reader.mapping(config["identity"], f"{path}.identity", "identity")
        return _Provider("identity")
    sizes = SECRETBOX_KEY_SIZES if kind == "secretbox" else AES_KEY_SIZES
    keys = _read_keys(reader, problems, config[kind], f"{path}.{kind}", sizes)
    # A key with a problem is left out; the problem fails the whole file.
    return _Provider(kind, keys) if keys else None


def _check_overlap(problems: _Problems, resources: Sequence[str], path: str) -> None:
    if len(resources) < 2:
        return
    parsed = [parse_group_resource(r) for r in resources]
    duplicate = overlap = False
    for i, (group1, resource1) in enumerate(parsed):
        for j, (group2, resource2) in enumerate(parsed):
            if i == j:
                continue
            if (group1, resource1) == (group2, resource2) and not duplicate:
                duplicate = True
                continue
            if overlap:
                continue
            if (group1, resource1) == ("*", "*"):
                overlap = True
                continue
            if group1 != group2:
                continue
            if resource1 == "*" or resource2 == "*":
                overlap = True
    if duplicate:
        problems.invalid(path, _go_strings(resources), DUPLICATE_RESOURCE)
    if overlap:
        problems.invalid(path, _go_strings(resources), OVERLAP)


def _check_names(problems: _Problems, resources: Sequence[str], path: str) -> None:
    for index, resource in enumerate(resources):
        where, shown = f"{path}[{index}]", _go_quote(resource)
        group, name = parse_group_resource(resource)
        if resource.lower() != resource:
            problems.invalid(where, shown, CAPITALS)
        elif resource == "*":
            problems.invalid(where, shown, STAR_RESOURCE)
        elif resource in ("apiserveripinfo", "serviceipallocations", "servicenodeportallocations"):
            problems.invalid(where, shown, NON_REST_RESOURCE)
        elif group == "events.k8s.io":
            problems.invalid(where, shown, EVENTS_GROUP)
        elif group == "extensions":
            problems.invalid(where, shown, EXTENSIONS_GROUP)
        elif group == "*" and name != "*":
            problems.invalid(where, shown, ACROSS_GROUPS)


def _read_entries(reader: _Reader, problems: _Problems, document: Any) -> list[_ResourceEntry]:
    top = reader.mapping(document, "", "top") or {}
    raw_entries = reader.sequence(top.get("resources"), "resources")
    if not raw_entries:
        problems.required("resources", "at least one resources is required")
        return []
    entries: list[_ResourceEntry] = []
    for i, raw in enumerate(raw_entries):
        entry = reader.mapping(raw, f"resources[{i}]", "resource") or {}
        resources_path, providers_path = f"resources[{i}].resources", f"resources[{i}].providers"
        resources = [
            reader.string(value, f"{resources_path}[{j}]")
            for j, value in enumerate(reader.sequence(entry.get("resources"), resources_path))
        ]
        if not resources:
            problems.required(resources_path, f"at least one {resources_path} is required")
        _check_overlap(problems, resources, resources_path)
        _check_names(problems, resources, resources_path)
        raw_providers = reader.sequence(entry.get("providers"), providers_path)
        if not raw_providers:
            problems.required(providers_path, f"at least one {providers_path} is required")
        providers = [
            _read_provider(reader, problems, value, f"{providers_path}[{j}]")
            for j, value in enumerate(raw_providers)
        ]
        entries.append(
            _ResourceEntry(tuple(resources), tuple(p for p in providers if p is not None))
        )
    return entries


def _read_document(path: Path) -> Any:
    import yaml  # type: ignore[import-untyped]

    try:
        data = path.read_bytes()
    except OSError as err:
        raise EncryptionConfigError(
            path,
            "error while parsing file: error while loading file: error reading encryption "
            f"provider configuration file {_go_quote(str(path))}: {err.strerror}",
        ) from None
    if not data:
        raise EncryptionConfigError(
            path,
            "error while parsing file: error while loading file: encryption provider "
            f"configuration file {_go_quote(str(path))} is empty",
        )
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as err:
        # Only the problem and its place: YAML's own message quotes the line, which may be a key.
        where = getattr(err, "problem_mark", None)
        place = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(err, "problem", None) or "not YAML"
        raise EncryptionConfigError(
            path,
            "error while parsing file: error decoding encryption provider configuration file "
            f"{_go_quote(str(path))}: {problem}{place}",
        ) from None


def _check_type(path: str, document: Any) -> None:
    decoding = (
        "error while parsing file: error decoding encryption provider configuration file "
        f"{_go_quote(path)}: "
    )
    if not isinstance(document, Mapping):
        raise EncryptionConfigError(path, decoding + "Object 'Kind' is missing")
    kind, version = document.get("kind"), document.get("apiVersion")
    if not kind:
        raise EncryptionConfigError(path, decoding + "Object 'Kind' is missing")
    if version != API_VERSION or kind != KIND:
        raise EncryptionConfigError(
            path,
            decoding + f"no kind {_go_quote(str(kind))} is registered for version "
            f"{_go_quote(str(version or ''))}: etcdpy reads kind {KIND} of {API_VERSION}",
        )


def _build_provider(provider: _Provider) -> _Prefixed:
    if provider.kind == "identity":
        return _Prefixed(b"", _Identity())
    make: Callable[[bytes], _Transformer]
    prefix, make, no_match = {
        "aescbc": (PREFIX_AESCBC, _AESCBC, NO_MATCHING_AES_KEY),
        "aesgcm": (PREFIX_AESGCM, _AESGCM, NO_MATCHING_AES_KEY),
        "secretbox": (PREFIX_SECRETBOX, _Secretbox, NO_MATCHING_SECRETBOX_KEY),
    }[provider.kind]
    per_key = [_Prefixed(key.name.encode() + b":", make(key.secret)) for key in provider.keys]
    return _Prefixed(prefix, _PrefixList(per_key, no_match))


class EncryptionConfig:
    """The API server's encryption provider configuration (implements ``types.Transformers``).

    ``for_resource("secrets")`` is the transformer of that group-resource: its own entry, else
    its group's ``*.<group>`` entry, else ``*.*``, else None (stored as is)."""

    def __init__(self, entries: Sequence[_ResourceEntry], source: str = "") -> None:
        self.source = source
        providers: dict[tuple[str, str], list[_Provider]] = {}
        order: list[str] = []
        for entry in entries:
            built = list(entry.providers)
            for resource in entry.resources:
                group_resource = parse_group_resource(resource)
                group, _ = group_resource
                for masking in ((group, "*"), ("*", "*")):
                    if masking in providers:
                        raise EncryptionConfigError(
                            source or "<config>",
                            "error while building transformers: resource "
                            f"{_go_quote(_yaml_string(*group_resource))} is masked by earlier "
                            f"rule {_go_quote(_yaml_string(*masking))}",
                        )
                providers.setdefault(group_resource, []).extend(built)
                if resource not in order:
                    order.append(resource)
        self._order = tuple(order)
        self._transformers = {
            group_resource: ResourceTransformer(
                _PrefixList([_build_provider(p) for p in listed], NO_MATCHING_PREFIX),
                [p.kind for p in listed],
            )
            for group_resource, listed in providers.items()
        }

    def __repr__(self) -> str:
        return f"EncryptionConfig(resources={list(self._order)})"

    @classmethod
    def load(cls, path: str | Path) -> EncryptionConfig:
        """Reads and validates an ``EncryptionConfiguration`` file as kube-apiserver's
        ``--encryption-provider-config``; any problem -> EncryptionConfigError."""
        path = Path(path)
        return cls.from_document(_read_document(path), source=str(path))

    @classmethod
    def from_document(cls, document: Any, *, source: str = "") -> EncryptionConfig:
        """The configuration of an already decoded document (``load`` without the file)."""
        where = source or "<config>"
        _check_type(where, document)
        reader, problems = _Reader(), _Problems()
        entries = _read_entries(reader, problems, document)
        if reader.unknown or reader.type_errors:
            found = reader.unknown + reader.type_errors
            raise EncryptionConfigError(
                where, "error while parsing file: strict decoding error: " + ", ".join(found), found
            )
        if problems.items:
            raise EncryptionConfigError(
                where, "error while parsing file: " + aggregate(problems.items), problems.items
            )
        return cls(entries, source=source)

    @property
    def resources(self) -> list[str]:
        """The group-resources the file covers, as written ("secrets", "*.apps", "*.*")."""
        return list(self._order)

    def for_resource(self, group_resource: str) -> ValueTransformer | None:
        return self.transformer(group_resource)

    def transformer(self, group_resource: str) -> ResourceTransformer | None:
        """``for_resource`` with the concrete type (its provider names, ``writes_encrypted``)."""
        group, resource = parse_group_resource(group_resource)
        for candidate in ((group, resource), (group, "*"), ("*", "*")):
            found = self._transformers.get(candidate)
            if found is not None:
                return found
        return None

    def covers(self, group_resources: Iterable[str]) -> list[str]:
        """Those of ``group_resources`` this configuration has a transformer for."""
        return [gr for gr in group_resources if self.transformer(gr) is not None]
