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
_PREFIX_MESSAGE = (
    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_OPERATORS = "in, notin, =, ==, !=, gt, lt"
_SYMBOLS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_END = ""  # the literal of the end of the string, as the lexer gives it


def _bad(message: str) -> errors.BadRequest:
    return errors.BadRequest(message)


class _ParseError(Exception):
    """A requirement that does not parse: the API server's text, before its prefix."""


def _invalid(path: str, value: str, why: str) -> str:
    """field.Invalid's text; the parser's path is nil, which Go prints as "<nil>"."""
    return f'{path}: Invalid value: "{value}": {why}'


def _key_problems(key: str) -> list[str]:
    """validation.IsQualifiedName."""
    prefix, slash, name = key.rpartition("/")
    problems: list[str] = []
    if slash and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix and len(prefix) > 253:
        problems.append("prefix part must be no more than 253 characters")
    elif prefix and not _DNS1123_SUBDOMAIN.match(prefix):
        problems.append(_PREFIX_MESSAGE)
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if name and not _NAME.match(name):
        problems.append(_NAME_MESSAGE)
    return problems


def _value_problems(value: str) -> list[str]:
    """validation.IsValidLabelValue."""
    problems: list[str] = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if value and not _NAME.match(value):
        problems.append(_VALUE_MESSAGE)
    return problems


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


def _tokens(text: str) -> list[str]:
    """apimachinery's label lexer: identifiers (anything between blanks and symbols) and the
    symbols, the longest that is a token first; the list ends with the end-of-string literal."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in " \t\r\n":
            i += 1
            continue
        symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
        if symbol is not None:
            out.append(symbol)
            i += len(symbol)
            continue
        start = i
        while i < len(text) and text[i] not in " \t\r\n" and text[i] not in "=!(),<>":
            i += 1
        out.append(text[start:i])
    return out


def _is_identifier(token: str | None) -> bool:
    return token is not None and token != _END and token not in _SYMBOLS


# metav1.LabelSelector's operators -> the parser's.
_OBJECT_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


class LabelSelector:
    """A parsed label selector; ``LabelSelector.parse("")`` matches everything, a selector made
    with ``nothing=True`` (a nil metav1.LabelSelector) matches nothing."""

    def __init__(self, requirements: tuple[Requirement, ...] = (), nothing: bool = False) -> None:
        self.requirements = requirements
        self.nothing = nothing

    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @classmethod
    def from_object(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """A metav1.LabelSelector (matchLabels and matchExpressions, ANDed), as apimachinery's
        LabelSelectorAsSelector: None selects nothing, {} everything; errors.BadRequest with its
        messages for a selector it cannot read."""
        if selector is None:
            return cls(nothing=True)
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
        if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
            raise _bad("invalid label selector: matchLabels must be a map, matchExpressions a list")
        try:
            requirements = [
                _new_requirement(str(k), "=", [str(v)]) for k, v in match_labels.items()
            ]
            requirements += [_expression(e) for e in expressions]
        except _ParseError as err:
            raise _bad(str(err)) from None
        return cls(tuple(sorted(requirements, key=lambda r: r.key)))

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """labels.Parse: errors are BadRequests with its messages."""
        parser = _Parser(_tokens(text))
        return cls(tuple(sorted(parser.parse(), key=lambda r: r.key)))


class _Parser:
    """apimachinery's label selector parser, a recursive descent over the tokens (the lexer
    never yields an empty token, so "" is the end of the string)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def lookahead(self) -> str:
        return self.tokens[self.position] if self.position < len(self.tokens) else _END

    def consume(self) -> str:
        token = self.lookahead()
        self.position += 1
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token = self.lookahead()
            if token == _END:
                return requirements
            if not (_is_identifier(token) or token == "!"):
                raise _bad(f"found '{token}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except _ParseError as err:
                raise _bad(f"unable to parse requirement: {err}") from None
            after = self.consume()
            if after == _END:
                return requirements
            if after != ",":
                raise _bad(f"found '{after}', expected: ',' or 'end of string'")
            following = self.lookahead()
            if not (_is_identifier(following) or following == "!"):
                raise _bad(f"found '{following}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        negated = False
        token = self.consume()
        if token == "!":
            negated = True
            token = self.consume()
        if not _is_identifier(token):
            raise _ParseError(f"found '{token}', expected: identifier")
        key = token
        problems = _key_problems(key)
        if problems:
            raise _ParseError(_invalid("<nil>", key, "; ".join(problems)))
        if negated:
            return Requirement(key, "!")
        if self.lookahead() in (",", _END):
            return Requirement(key, "exists")
        found = self.consume()
        op = {"=": "=", "==": "=", "!=": "!=", ">": "gt", "<": "lt"}.get(found)
        if op is None and found in ("in", "notin"):
            op = found
        if op is None:
            raise _ParseError(f"found '{found}', expected: {_OPERATORS}")
        values = self.values() if op in ("in", "notin") else self.exact_value()
        return _new_requirement(key, op, sorted(values))

    def values(self) -> set[str]:
        token = self.consume()
        if token != "(":
            raise _ParseError(f"found '{token}' expected: '('")
        ahead = self.lookahead()
        if ahead == ")":
            self.consume()
            return {""}
        if not (_is_identifier(ahead) or ahead == ","):
            raise _ParseError(f"found '{ahead}', expected: ',', ')' or identifier")
        found: set[str] = set()
        while True:
            token = self.consume()
            if _is_identifier(token):
                found.add(token)
                following = self.lookahead()
                if following == ",":
                    continue
                if following == ")":
                    self.consume()
                    return found
                raise _ParseError(f"found '{following}', expected: ',' or ')'")
            if token == ",":  # "(,", ",,", ",)": empty values
                if not found:
                    found.add("")
                following = self.lookahead()
                if following in (",", ")"):
                    found.add("")
                if following == ")":
                    self.consume()
                    return found
                continue
            raise _ParseError(f"found '{token}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.lookahead() in (",", _END):
            return {""}
        token = self.consume()
        if _is_identifier(token):
            return {token}
        raise _ParseError(f"found '{token}', expected: identifier")


def _new_requirement(key: str, operator: str, values: list[str]) -> Requirement:
    """labels.NewRequirement's checks of the values (its errors as one aggregate)."""
    problems: list[str] = []
    if operator in ("in", "notin") and not values:
        problems.append(
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
        )
    if operator in ("gt", "lt"):
        for i, value in enumerate(values):
            try:
                int(value)
            except ValueError:
                problems.append(
                    _invalid(
                        f"values[{i}]",
                        value,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    )
                )
    for i, value in enumerate(values):
        value_problems = _value_problems(value)
        if value_problems:
            problems.append(_invalid(f"values[{i}][{key}]", value, "; ".join(value_problems)))
    if len(problems) == 1:
        raise _ParseError(problems[0])
    if problems:
        raise _ParseError("[" + ", ".join(problems) + "]")
    return Requirement(key, operator, tuple(values))


def _expression(expression: Any) -> Requirement:
    """One matchExpression, checked as LabelSelectorAsSelector and NewRequirement check it."""
    if not isinstance(expression, Mapping):
        raise _ParseError("a matchExpression must be an object")
    key, operator = expression.get("key"), expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    if operator not in _OBJECT_OPERATORS:
        raise _ParseError(f'"{operator}" is not a valid label selector operator')
    if not isinstance(key, str) or _key_problems(key):
        problems = "; ".join(_key_problems(key)) if isinstance(key, str) else "must be a string"
        raise _ParseError(_invalid("key", str(key or ""), problems))
    if operator in ("Exists", "DoesNotExist") and values:
        raise _ParseError(
            _invalid_values(values, "values set must be empty for exists and does not exist")
        )
    return _new_requirement(key, _OBJECT_OPERATORS[operator], values)


def _invalid_values(values: list[str], why: str) -> str:
    shown = "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"
    return f"values: Invalid value: {shown}: {why}"


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
        "spec.host": _path("spec", "nodeName"),  # the old name the conversion still maps
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


# Kinds whose conversion func does not take metadata.namespace (nodes': name and unschedulable).
_NO_NAMESPACE_FIELD = {("", "Node")}


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
        if (group, kind) in _NO_NAMESPACE_FIELD:
            del getters["metadata.namespace"]
        requirements: list[FieldRequirement] = []
        for term in _split_unescaped(text, ","):
            if not term:
                continue
            requirement = _field_term(term, text)
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


def _field_term(term: str, selector: str) -> FieldRequirement:
    """fields.splitTerm: the leftmost operator ("!=" before "==" before "=" at one place)."""
    for i in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, i):
                value = _unescape(term[i + len(operator) :])
                return FieldRequirement(term[:i], "!=" if operator == "!=" else "=", value)
    raise _bad(f"invalid selector: '{selector}'; can't understand '{term}'")
