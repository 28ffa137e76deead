"""Label and field selectors as the API server parses and applies them (apimachinery's
pkg/labels and pkg/fields, the registries' GetAttrs and field label conversions).

Labels: ``a=b``, ``a==b``, ``a!=b``, ``a in (b,c)``, ``a notin (b,c)``, ``a`` (exists), ``!a``
(does not exist), ``a>1``, ``a<1``, joined by commas (all must hold). Keys and values are
validated as label keys and values; errors are ``errors.BadRequest``.

Fields: ``f=v``, ``f==v``, ``f!=v`` joined by commas, with ``\\`` escaping ``,``, ``=`` and ``\\``.
Each kind supports the fields its registry exposes; others are refused with the API server's
message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from etcdpy.k8s import errors

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_NAME_MESSAGE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_OPERATORS = "in, notin, =, ==, !=, gt, lt"


def _bad(message: str) -> errors.BadRequest:
    return errors.BadRequest(message)


def _invalid(path: str, value: str, why: str) -> str:
    return f'{path}: Invalid value: "{value}": {why}'


def _key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return (
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME.match(name):
        return _NAME_MESSAGE
    return None


def _check_key(key: str) -> None:
    problem = _key_problem(key)
    if problem is not None:
        raise _bad(_invalid("key", key, problem))


def _check_value(value: str) -> None:
    if len(value) > 63:
        raise _bad(_invalid("values[0]", value, "must be no more than 63 characters"))
    if value and not _NAME.match(value):
        raise _bad(_invalid("values[0]", value, _VALUE_MESSAGE))


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if not present:
            return False
        try:
            number, bound = int(value), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.operator == "gt" else number < bound


_SPECIAL = set(" \t\r\n,()=!<>")


def _tokens(text: str) -> list[str]:
    """apimachinery's label lexer: identifiers, and the operators and punctuation."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in " \t\r\n":
            i += 1
        elif text.startswith(("==", "!="), i):
            out.append(text[i : i + 2])
            i += 2
        elif char in ",()=!<>":
            out.append(char)
            i += 1
        else:
            start = i
            while i < len(text) and text[i] not in _SPECIAL:
                i += 1
            out.append(text[start:i])
    return out


class LabelSelector:
    """A parsed label selector; ``LabelSelector.parse("")`` matches everything."""

    def __init__(self, requirements: tuple[Requirement, ...] = ()) -> None:
        self.requirements = requirements

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        tokens = _tokens(text)
        requirements: list[Requirement] = []
        i = 0
        while i < len(tokens):
            requirement, i = _requirement(tokens, i)
            requirements.append(requirement)
            if i < len(tokens):
                if tokens[i] != ",":
                    raise _bad(f"found '{tokens[i]}', expected: ',' or 'end of string'")
                i += 1
                if i == len(tokens):
                    raise _bad("found '', expected: !, identifier, or 'end of string'")
        return cls(tuple(sorted(requirements, key=lambda r: r.key)))


def _requirement(tokens: list[str], i: int) -> tuple[Requirement, int]:
    if tokens[i] == "!":
        if i + 1 >= len(tokens) or tokens[i + 1] in ",()=!<>" or tokens[i + 1] in ("==", "!="):
            found = tokens[i + 1] if i + 1 < len(tokens) else ""
            raise _bad(f"found '{found}', expected: identifier")
        _check_key(tokens[i + 1])
        return Requirement(tokens[i + 1], "!"), i + 2
    key = tokens[i]
    if key in ",()=<>" or key in ("==", "!="):
        raise _bad(f"found '{key}', expected: !, identifier, or 'end of string'")
    _check_key(key)
    i += 1
    if i == len(tokens) or tokens[i] == ",":
        return Requirement(key, "exists"), i
    operator = tokens[i]
    i += 1
    if operator in ("=", "=="):
        op = "="
    elif operator in ("!=", ">", "<", "in", "notin"):
        op = {">": "gt", "<": "lt"}.get(operator, operator)
    else:
        raise _bad(f"found '{operator}', expected: {_OPERATORS}")
    if op in ("in", "notin"):
        if i >= len(tokens) or tokens[i] != "(":
            found = tokens[i] if i < len(tokens) else ""
            raise _bad(f"found '{found}', expected: '('")
        i += 1
        values: list[str] = []
        while True:
            if i >= len(tokens):
                raise _bad("found '', expected: ',', ')' or identifier")
            token = tokens[i]
            if token == ")":
                i += 1
                break
            if token == ",":
                values.append("")  # an empty value between commas, as Go's parser keeps it
                i += 1
                continue
            _check_value(token)
            values.append(token)
            i += 1
            if i < len(tokens) and tokens[i] == ",":
                i += 1
        if not values:
            raise _bad(
                _invalid("values", "", "for 'in', 'notin' operators, values set can't be empty")
            )
        return Requirement(key, op, tuple(values)), i
    value = ""
    if i < len(tokens) and tokens[i] != ",":
        if tokens[i] in ("(", ")", "=", "!", "<", ">", "==", "!="):
            raise _bad(f"found '{tokens[i]}', expected: identifier")
        value = tokens[i]
        i += 1
    if op in ("gt", "lt"):
        try:
            int(value)
        except ValueError:
            raise _bad(
                _invalid(
                    "values[0]", value, "for 'Gt', 'Lt' operators, the value must be an integer"
                )
            ) from None
    else:
        _check_value(value)
    return Requirement(key, op, (value,)), i


# --- fields -----------------------------------------------------------------------------------

Getter = Callable[[Mapping[str, Any]], str]


def _path(*names: str) -> Getter:
    def get(obj: Mapping[str, Any]) -> str:
        value: Any = obj
        for name in names:
            value = value.get(name) if isinstance(value, Mapping) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


def _int_path(*names: str) -> Getter:
    base = _path(*names)
    return lambda obj: base(obj) or "0"


def _bool_path(*names: str) -> Getter:
    base = _path(*names)
    return lambda obj: base(obj) or "false"


_META: dict[str, Getter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

# The fields each registry exposes beyond the metadata (its GetAttrs and conversion funcs).
_KIND_FIELDS: dict[tuple[str, str], dict[str, Getter]] = {
    ("", "Pod"): {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool_path("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    ("", "Node"): {"spec.unschedulable": _bool_path("spec", "unschedulable")},
    ("", "Secret"): {"type": _path("type")},
    ("", "Namespace"): {"status.phase": _path("status", "phase")},
    ("", "ReplicationController"): {"status.replicas": _int_path("status", "replicas")},
    ("", "Service"): {
        "spec.clusterIP": _path("spec", "clusterIP"),
        "spec.type": _path("spec", "type"),
    },
    ("", "Event"): {
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    ("apps", "ReplicaSet"): {"status.replicas": _int_path("status", "replicas")},
    ("batch", "Job"): {"status.successful": _int_path("status", "succeeded")},
    ("certificates.k8s.io", "CertificateSigningRequest"): {
        "spec.signerName": _path("spec", "signerName")
    },
}


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str


class FieldSelector:
    """A parsed field selector, bound to one kind's supported fields."""

    def __init__(self, requirements: tuple[FieldRequirement, ...], getters: dict[str, Getter]):
        self.requirements = requirements
        self._getters = getters

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for requirement in self.requirements:
            value = self._getters[requirement.field](obj)
            if (value == requirement.value) != (requirement.operator == "="):
                return False
        return True

    @classmethod
    def parse(cls, text: str, group: str = "", kind: str = "") -> FieldSelector:
        special = _KIND_FIELDS.get((group, kind))
        getters = {**_META, **(special or {})}
        requirements: list[FieldRequirement] = []
        for term in _split_unescaped(text, ","):
            if not term:
                continue
            requirement = _field_term(term)
            if requirement.field not in getters:
                if special is not None:
                    raise _bad(f"field label not supported: {requirement.field}")
                raise _bad(
                    f'"{requirement.field}" is not a known field selector: only '
                    '"metadata.name", "metadata.namespace"'
                )
            requirements.append(requirement)
        return cls(tuple(requirements), getters)


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise _bad(f"invalid escape sequence in field selector value {value!r}")
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _field_term(term: str) -> FieldRequirement:
    """fields.splitTerm: the leftmost operator ("!=" before "==" before "=" at one place)."""
    for i in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, i):
                value = _unescape(term[i + len(operator) :])
                return FieldRequirement(term[:i], "!=" if operator == "!=" else "=", value)
    raise _bad(f"invalid selector: '{term}'; can't understand '{term}'")
