"""Label and field selectors: apimachinery's grammar, matching and errors."""

from __future__ import annotations

import pytest

from etcdpy.k8s import errors
from etcdpy.k8s.selectors import FieldSelector, LabelSelector

LABELS = {"app": "web", "tier": "front", "n": "7"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db, cache)", True),
        ("missing notin (db)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("n>5", True),
        ("n<5", False),
        ("app=web,tier=front", True),
        ("app=web, tier=back", False),
        ("example.com/app", False),
        ("app=", False),
    ],
)
def test_label_selectors_match(selector: str, matches: bool) -> None:
    assert LabelSelector.parse(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app in web", "found 'web', expected: '('"),
        ("app = = web", "found '=', expected: identifier"),
        ("app~web", 'key: Invalid value: "app~web": name part must consist of alphanumeric'),
        ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("app=web,", "found '', expected: !, identifier, or 'end of string'"),
        ("n>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("app=" + "v" * 64, "must be no more than 63 characters"),
        ("Bad_Prefix/x=1", "prefix part a lowercase RFC 1123 subdomain"),
    ],
)
def test_bad_label_selectors_are_bad_requests(selector: str, message: str) -> None:
    with pytest.raises(errors.BadRequest) as caught:
        LabelSelector.parse(selector)
    assert message in caught.value.message


POD = {
    "metadata": {"name": "p", "namespace": "ns"},
    "spec": {"nodeName": "node-1", "hostNetwork": True},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("metadata.name=p", True),
        ("metadata.name==p,metadata.namespace=ns", True),
        ("metadata.namespace!=ns", False),
        ("spec.nodeName=node-1,status.phase=Running", True),
        ("spec.nodeName=", False),
        ("spec.hostNetwork=true", True),
        ("spec.restartPolicy=", True),
        ("metadata.name=p\\,q", False),
    ],
)
def test_field_selectors_of_pods(selector: str, matches: bool) -> None:
    assert FieldSelector.parse(selector, "", "Pod").matches(POD) is matches


def test_field_selectors_per_kind_and_their_errors() -> None:
    secret = {"metadata": {"name": "s"}, "type": "kubernetes.io/tls"}
    assert FieldSelector.parse("type=kubernetes.io/tls", "", "Secret").matches(secret)
    with pytest.raises(errors.BadRequest) as caught:
        FieldSelector.parse("spec.nodeName=x", "", "Secret")
    assert caught.value.message == "field label not supported: spec.nodeName"
    with pytest.raises(errors.BadRequest) as caught:
        FieldSelector.parse("data.x=1", "", "ConfigMap")
    assert caught.value.message == (
        '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
    with pytest.raises(errors.BadRequest) as caught:
        FieldSelector.parse("metadata.name", "", "Pod")
    assert (
        caught.value.message
        == "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
    )
