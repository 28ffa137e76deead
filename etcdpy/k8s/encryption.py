"""Encryption at rest as kube-apiserver configures it: its ``--encryption-provider-config`` file
(``EncryptionConfiguration``, apiserver.config.k8s.io/v1), checked with the API server's
validation and messages, and the transformers it builds (``encryption_providers.py``). KMS
providers are refused with a clear error: etcdpy has no KMS plugin client.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcdpy.k8s.encryption_providers import (
    AES_KEY_SIZES,
    NO_MATCHING_AES_KEY,
    NO_MATCHING_PREFIX,
    NO_MATCHING_SECRETBOX_KEY,
    PREFIX_AESCBC,
    PREFIX_AESGCM,
    PREFIX_SECRETBOX,
    SECRETBOX_KEY_SIZES,
    AesCbcProvider,
    AesGcmProvider,
    IdentityProvider,
    Prefixed,
    PrefixList,
    ResourceTransformer,
    SecretboxProvider,
    Transformer,
    aggregate,
)
from etcdpy.k8s.types import ValueTransformer

__all__ = ["API_VERSION", "KIND", "EncryptionConfig", "EncryptionConfigError"]

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"


class EncryptionConfigError(ValueError):
    """The encryption provider configuration file cannot be used: ``str()`` names the file and
    gives the API server's message (every validation problem, joined as it joins them)."""

    def __init__(self, path: str | Path, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


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


def _build_provider(provider: _Provider) -> Prefixed:
    if provider.kind == "identity":
        return Prefixed(b"", IdentityProvider())
    make: Callable[[bytes], Transformer]
    prefix, make, no_match = {
        "aescbc": (PREFIX_AESCBC, AesCbcProvider, NO_MATCHING_AES_KEY),
        "aesgcm": (PREFIX_AESGCM, AesGcmProvider, NO_MATCHING_AES_KEY),
        "secretbox": (PREFIX_SECRETBOX, SecretboxProvider, NO_MATCHING_SECRETBOX_KEY),
    }[provider.kind]
    per_key = [Prefixed(key.name.encode() + b":", make(key.secret)) for key in provider.keys]
    return Prefixed(prefix, PrefixList(per_key, no_match))


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
                PrefixList([_build_provider(p) for p in listed], NO_MATCHING_PREFIX),
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
