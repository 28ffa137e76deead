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
        ("app in (,web)", True),
        ("app notin ()", True),
        ("in in (in)", False),
        ("!app,tier", False),
    ],
)
def test_label_selectors_match(selector: str, matches: bool) -> None:
    assert LabelSelector.parse(selector).matches(LABELS) is matches


PARSE = "unable to parse requirement: "


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app in web", PARSE + "found 'web' expected: '('"),
        ("app in (a b)", PARSE + "found 'b', expected: ',' or ')'"),
        ("app = = web", PARSE + "found '=', expected: identifier"),
        ("app~web", PARSE + '<nil>: Invalid value: "app~web": name part must consist of'),
        ("a b", PARSE + "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("app=web,", "found '', expected: identifier after ','"),
        ("app=web)", "found ')', expected: ',' or 'end of string'"),
        (",app", "found ',', expected: !, identifier, or 'end of string'"),
        ("n>x", PARSE + "values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value"),
        (
            "app=" + "v" * 64,
            PARSE + f'values[0][app]: Invalid value: "{"v" * 64}": must be no more',
        ),
        ("Bad_Prefix/x=1", PARSE + '<nil>: Invalid value: "Bad_Prefix/x": prefix part a lowercase'),
    ],
)
def test_bad_label_selectors_are_bad_requests(selector: str, message: str) -> None:
    with pytest.raises(errors.BadRequest) as caught:
        LabelSelector.parse(selector)
    assert caught.value.message.startswith(message)


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
        ("spec.host=node-1", True),
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
        FieldSelector.parse("metadata.namespace=x", "", "Node")
    assert caught.value.message == "field label not supported: metadata.namespace"
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


def test_a_label_selector_object_as_label_selector_as_selector_reads_it() -> None:
    both = LabelSelector.from_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }
    )
    assert both.matches({"app": "web", "tier": "b"})
    assert not both.matches({"app": "web", "tier": "c"})
    assert not both.matches({"app": "web", "tier": "a", "canary": ""})
    assert LabelSelector.from_object({}).matches({"any": "thing"})  # {} selects everything
    assert not LabelSelector.from_object(None).matches({})  # nil selects nothing
    for expression, message in (
        ({"key": "t", "operator": "Near"}, '"Near" is not a valid label selector operator'),
        (
            {"key": "t", "operator": "In", "values": []},
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"key": "t", "operator": "Exists", "values": ["1"]},
            'values: Invalid value: []string{"1"}: values set must be empty for exists and does '
            "not exist",
        ),
    ):
        with pytest.raises(errors.BadRequest) as raised:
            LabelSelector.from_object({"matchExpressions": [expression]})
        assert raised.value.message.endswith(message), raised.value.message
