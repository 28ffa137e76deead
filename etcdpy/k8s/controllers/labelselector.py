"""metav1.LabelSelector as a function of a label set (apimachinery's LabelSelectorAsSelector):
matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist), all ANDed. A selector with
neither selects nothing here: a ReplicaSet must have one, and an empty one would claim every pod
of its namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from etcdpy.k8s import errors

LabelMatcher = Callable[[Mapping[str, str]], bool]

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _requirement(expression: Mapping[str, Any]) -> LabelMatcher:
    key = expression.get("key")
    operator = expression.get("operator")
    values = expression.get("values") or []
    if not isinstance(key, str) or not key:
        raise errors.BadRequest("invalid label selector: a matchExpression has no key")
    if operator not in _OPERATORS:
        raise errors.BadRequest(f'invalid label selector: "{operator}" is not a valid operator')
    if operator in ("In", "NotIn") and not values:
        raise errors.BadRequest(
            f"invalid label selector: for 'in', 'notin' operators, values set can't be empty"
            f" (key {key})"
        )
    if operator in ("Exists", "DoesNotExist") and values:
        raise errors.BadRequest(
            f"invalid label selector: values set must be empty for exists and does not exist"
            f" (key {key})"
        )
    allowed = frozenset(str(v) for v in values)
    if operator == "In":
        return lambda labels: labels.get(key) in allowed
    if operator == "NotIn":
        return lambda labels: labels.get(key) not in allowed
    if operator == "Exists":
        return lambda labels: key in labels
    return lambda labels: key not in labels


def selector_matcher(selector: Mapping[str, Any] | None) -> LabelMatcher:
    """A matcher for ``selector``; errors.BadRequest when it cannot be read."""
    if not selector:
        return lambda labels: False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        raise errors.BadRequest("invalid label selector: matchLabels or matchExpressions")
    requirements = [_requirement(e) for e in expressions if isinstance(e, Mapping)]
    if len(requirements) != len(expressions):
        raise errors.BadRequest("invalid label selector: a matchExpression is not an object")
    wanted = {str(k): str(v) for k, v in match_labels.items()}
    if not wanted and not requirements:
        return lambda labels: False

    def matches(labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in wanted.items()) and all(
            r(labels) for r in requirements
        )

    return matches
