"""Resources: kubectl's names resolve, and every kind's etcd key is the API server's
(the paths of kubernetes' test/integration/etcd/data.go)."""

from __future__ import annotations

import pytest
from kubernetes.client import V1Deployment, V1Node, V1Pod

from etcdpy.k8s import errors
from etcdpy.k8s.resources import DEFAULT_REGISTRY, ResourceRegistry, custom_resource, from_crd

# (group-resource, namespaced?, the path data.go expects for namespace "ns" and name "x")
DATA_GO_PATHS = [
    ("configmaps", "/registry/configmaps/ns/x"),
    ("services", "/registry/services/specs/ns/x"),
    ("podtemplates", "/registry/podtemplates/ns/x"),
    ("pods", "/registry/pods/ns/x"),
    ("endpoints", "/registry/services/endpoints/ns/x"),
    ("resourcequotas", "/registry/resourcequotas/ns/x"),
    ("limitranges", "/registry/limitranges/ns/x"),
    ("namespaces", "/registry/namespaces/x"),
    ("nodes", "/registry/minions/x"),
    ("persistentvolumes", "/registry/persistentvolumes/x"),
    ("events", "/registry/events/ns/x"),
    ("persistentvolumeclaims", "/registry/persistentvolumeclaims/ns/x"),
    ("serviceaccounts", "/registry/serviceaccounts/ns/x"),
    ("secrets", "/registry/secrets/ns/x"),
    ("replicationcontrollers", "/registry/controllers/ns/x"),
    ("daemonsets.apps", "/registry/daemonsets/ns/x"),
    ("deployments.apps", "/registry/deployments/ns/x"),
    ("statefulsets.apps", "/registry/statefulsets/ns/x"),
    ("replicasets.apps", "/registry/replicasets/ns/x"),
    ("controllerrevisions.apps", "/registry/controllerrevisions/ns/x"),
    ("horizontalpodautoscalers.autoscaling", "/registry/horizontalpodautoscalers/ns/x"),
    ("jobs.batch", "/registry/jobs/ns/x"),
    ("cronjobs.batch", "/registry/cronjobs/ns/x"),
    ("certificatesigningrequests.certificates.k8s.io", "/registry/certificatesigningrequests/x"),
    ("clustertrustbundles.certificates.k8s.io", "/registry/clustertrustbundles/x"),
    ("leases.coordination.k8s.io", "/registry/leases/ns/x"),
    ("leasecandidates.coordination.k8s.io", "/registry/leasecandidates/ns/x"),
    ("endpointslices.discovery.k8s.io", "/registry/endpointslices/ns/x"),
    ("events.events.k8s.io", "/registry/events/ns/x"),
    ("ingresses.networking.k8s.io", "/registry/ingress/ns/x"),
    ("ingressclasses.networking.k8s.io", "/registry/ingressclasses/x"),
    ("networkpolicies.networking.k8s.io", "/registry/networkpolicies/ns/x"),
    ("ipaddresses.networking.k8s.io", "/registry/ipaddresses/x"),
    ("servicecidrs.networking.k8s.io", "/registry/servicecidrs/x"),
    ("poddisruptionbudgets.policy", "/registry/poddisruptionbudgets/ns/x"),
    ("flowschemas.flowcontrol.apiserver.k8s.io", "/registry/flowschemas/x"),
    (
        "prioritylevelconfigurations.flowcontrol.apiserver.k8s.io",
        "/registry/prioritylevelconfigurations/x",
    ),
    ("volumeattachments.storage.k8s.io", "/registry/volumeattachments/x"),
    ("volumeattributesclasses.storage.k8s.io", "/registry/volumeattributesclasses/x"),
    ("storageclasses.storage.k8s.io", "/registry/storageclasses/x"),
    ("csistoragecapacities.storage.k8s.io", "/registry/csistoragecapacities/ns/x"),
    ("csinodes.storage.k8s.io", "/registry/csinodes/x"),
    ("csidrivers.storage.k8s.io", "/registry/csidrivers/x"),
    ("roles.rbac.authorization.k8s.io", "/registry/roles/ns/x"),
    ("clusterroles.rbac.authorization.k8s.io", "/registry/clusterroles/x"),
    ("rolebindings.rbac.authorization.k8s.io", "/registry/rolebindings/ns/x"),
    ("clusterrolebindings.rbac.authorization.k8s.io", "/registry/clusterrolebindings/x"),
    (
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        "/registry/validatingwebhookconfigurations/x",
    ),
    (
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "/registry/mutatingwebhookconfigurations/x",
    ),
    (
        "validatingadmissionpolicies.admissionregistration.k8s.io",
        "/registry/validatingadmissionpolicies/x",
    ),
    (
        "validatingadmissionpolicybindings.admissionregistration.k8s.io",
        "/registry/validatingadmissionpolicybindings/x",
    ),
    (
        "mutatingadmissionpolicies.admissionregistration.k8s.io",
        "/registry/mutatingadmissionpolicies/x",
    ),
    (
        "mutatingadmissionpolicybindings.admissionregistration.k8s.io",
        "/registry/mutatingadmissionpolicybindings/x",
    ),
    ("priorityclasses.scheduling.k8s.io", "/registry/priorityclasses/x"),
    ("apiservices.apiregistration.k8s.io", "/registry/apiregistration.k8s.io/apiservices/x"),
    (
        "customresourcedefinitions.apiextensions.k8s.io",
        "/registry/apiextensions.k8s.io/customresourcedefinitions/x",
    ),
    ("runtimeclasses.node.k8s.io", "/registry/runtimeclasses/x"),
    ("devicetaintrules.resource.k8s.io", "/registry/devicetaintrules/x"),
    ("deviceclasses.resource.k8s.io", "/registry/deviceclasses/x"),
    ("resourceclaims.resource.k8s.io", "/registry/resourceclaims/ns/x"),
    ("resourceclaimtemplates.resource.k8s.io", "/registry/resourceclaimtemplates/ns/x"),
    ("resourceslices.resource.k8s.io", "/registry/resourceslices/x"),
    ("storageversions.internal.apiserver.k8s.io", "/registry/storageversions/x"),
    ("storageversionmigrations.storagemigration.k8s.io", "/registry/storageversionmigrations/x"),
]


@pytest.mark.parametrize(("group_resource", "path"), DATA_GO_PATHS)
def test_etcd_paths_are_the_api_servers(group_resource: str, path: str) -> None:
    resource = DEFAULT_REGISTRY.resolve(group_resource)
    assert resource.group_resource == group_resource
    assert resource.key("/registry", "ns", "x").decode() == path


def test_every_built_in_resource_is_covered() -> None:
    covered = {group_resource for group_resource, _ in DATA_GO_PATHS}
    assert {r.group_resource for r in DEFAULT_REGISTRY.resources()} <= covered


@pytest.mark.parametrize(
    ("name", "group_resource"),
    [
        ("pods", "pods"),
        ("pod", "pods"),
        ("Pod", "pods"),
        ("po", "pods"),
        (V1Pod, "pods"),
        ("no", "nodes"),
        (V1Node, "nodes"),
        ("deploy", "deployments.apps"),
        ("deployments.apps", "deployments.apps"),
        ("deployments.v1.apps", "deployments.apps"),
        (V1Deployment, "deployments.apps"),
        ("ev", "events"),
        ("events", "events"),
        ("crd", "customresourcedefinitions.apiextensions.k8s.io"),
        ("svc", "services"),
    ],
)
def test_names_resolve_as_kubectl_resolves_them(name: str | type, group_resource: str) -> None:
    assert DEFAULT_REGISTRY.resolve(name).group_resource == group_resource


def test_models_and_api_versions() -> None:
    assert DEFAULT_REGISTRY.resolve("pods").model == "V1Pod"
    assert DEFAULT_REGISTRY.resolve("events").model == "CoreV1Event"
    assert DEFAULT_REGISTRY.resolve("hpa").api_version == "autoscaling/v2"
    assert DEFAULT_REGISTRY.for_object({"apiVersion": "apps/v1", "kind": "Deployment"}).plural == (
        "deployments"
    )


def test_unknown_names_are_the_api_servers_bad_request() -> None:
    with pytest.raises(errors.BadRequest) as caught:
        DEFAULT_REGISTRY.resolve("gizmos")
    assert caught.value.message == 'the server doesn\'t have a resource type "gizmos"'


def test_custom_resources_live_under_their_group() -> None:
    registry = ResourceRegistry()
    registry.register(custom_resource("cr.bar.com", "v1", "Foo", "foos", namespaced=True))
    assert (
        registry.resolve("foo").key("/registry", "ns", "cr1foo")
        == b"/registry/cr.bar.com/foos/ns/cr1foo"
    )
    pants = from_crd(
        {
            "spec": {
                "group": "custom.fancy.com",
                "scope": "Cluster",
                "names": {"plural": "pants", "kind": "Pant"},
                "versions": [{"name": "v1", "storage": False}, {"name": "v2", "storage": True}],
            }
        }
    )
    assert pants.key("/registry", "", "cr2pant") == b"/registry/custom.fancy.com/pants/cr2pant"
    assert pants.api_version == "custom.fancy.com/v2"
    assert pants.prefix("/registry") == b"/registry/custom.fancy.com/pants/"
