"""Bad values never render: values.schema.json rejects wrong types, enums and ranges with helm's
message naming the value, and the chart's own checks reject combinations the schema cannot
express (template `fail`, with a message naming the values to set)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.helm_chart import CHART, RELEASE, run_helm

SCHEMA_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
    ({"replicaCount": "three"}, "at '/replicaCount': got string, want integer"),
    ({"logLevel": "loud"}, "at '/logLevel': value must be one of"),
    ({"containerPorts": {"client": 70000}}, "at '/containerPorts/client': maximum"),
    ({"auth": {"token": {"type": "oauth"}}}, "at '/auth/token/type': value must be one of"),
    ({"podAntiAffinityPreset": "always"}, "at '/podAntiAffinityPreset': value must be one of"),
    ({"persistence": {"size": "lots"}}, "at '/persistence/size'"),
    ({"replicaCont": 3}, "additional properties 'replicaCont' not allowed"),
    ({"disasterRecovery": {"cronjob": {"snapshotHistoryLimit": 0}}}, "snapshotHistoryLimit"),
]

TEMPLATE_ERRORS: list[tuple[dict[str, Any], str]] = [
    (
        {"auth": {"rbac": {"create": True}}},
        "auth.rbac.create=true needs auth.rbac.rootPassword or auth.rbac.existingSecret",
    ),
    (
        {"auth": {"rbac": {"allowNoneAuthentication": False}}},
        "set auth.rbac.allowNoneAuthentication=true",
    ),
    (
        {"auth": {"rbac": {"create": True, "rootPassword": "x"}}},
        "auth.token.type=jwt needs auth.token.privateKey.existingSecret",
    ),
    ({"auth": {"client": {"secureTransport": True}}}, "needs auth.client.existingSecret"),
    ({"auth": {"peer": {"secureTransport": True}}}, "needs auth.peer.existingSecret"),
    (
        {"auth": {"client": {"enableAuthentication": True}}},
        "auth.client.enableAuthentication=true (client certificates) needs",
    ),
    ({"startFromSnapshot": {"enabled": True}}, "needs startFromSnapshot.existingClaim"),
    ({"pdb": {"minAvailable": 2, "maxUnavailable": 1}}, "cannot both be set"),
]


@pytest.mark.parametrize(("values", "message"), SCHEMA_ERRORS + TEMPLATE_ERRORS)
def test_bad_values_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    result = run_helm("template", RELEASE, str(CHART), values=values)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("values", "message"), SCHEMA_ERRORS[:3])
def test_lint_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), values=values)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
