"""The resources the object store knows: each built-in kind's group, version, plural, scope,
kubectl's short names, the ``kubernetes`` package's model and, above all, the etcd prefix the
kube-apiserver stores it under (mostly the plural, but nodes are ``minions``, services
``services/specs``, endpoints ``services/endpoints``, replication controllers ``controllers``,
ingresses ``ingress``, and the aggregator's and apiextensions' resources sit under their group:
facts from kubernetes' test/integration/etcd/data.go). Custom resources live under
``<group>/<plural>``.

Keys: ``<root>/<prefix>/<namespace>/<name>`` for namespaced kinds, ``<root>/<prefix>/<name>``
for cluster-scoped ones.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcdpy.k8s import errors
from etcdpy.k8s.types import KubeObject


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    etcd_prefix: str
    short_names: tuple[str, ...] = ()
    model: str | None = None

    @property
    def group_resource(self) -> str:
        """ "pods", "deployments.apps" (schema.GroupResource's String())."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def key(self, root: str, namespace: str, name: str) -> bytes:
        if self.namespaced:
            return f"{_root(root)}/{self.etcd_prefix}/{namespace}/{name}".encode()
        return f"{_root(root)}/{self.etcd_prefix}/{name}".encode()

    def prefix(self, root: str, namespace: str | None = None) -> bytes:
        """The prefix a list or watch ranges over; ends with "/"."""
        if self.namespaced and namespace:
            return f"{_root(root)}/{self.etcd_prefix}/{namespace}/".encode()
        return f"{_root(root)}/{self.etcd_prefix}/".encode()


def _root(root: str) -> str:
    """The API server's path.Join("/", prefix): one leading slash, no trailing one."""
    return "/" + root.strip("/") if root.strip("/") else ""


# Models whose names carry their group, because two groups share the kind.
_MODEL_NAMES = {("", "Event"): "CoreV1Event", ("events.k8s.io", "Event"): "EventsV1Event"}


def _model_name(group: str, version: str, kind: str) -> str | None:
    """The ``kubernetes`` package's model for this version and kind, when it has one."""
    name = _MODEL_NAMES.get((group, kind)) or version[0].upper() + version[1:] + kind
    return name if name in _known_models() else None


@functools.cache
def _known_models() -> frozenset[str]:
    """The installed ``kubernetes`` package's model names, read from its models package's
    ``__all__`` without importing it: importing the models costs about 0.7 s, which every
    ``etcdpy k8s`` command paid at start-up though most never build a model."""
    spec = importlib.util.find_spec("kubernetes")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        init = Path(location) / "client" / "models" / "__init__.py"
        try:
            names = re.search(r"__all__ = \[(.*?)\]", init.read_text(), re.DOTALL)
        except OSError:
            continue
        if names is not None:
            return frozenset(re.findall(r'"(\w+)"', names.group(1)))
    from kubernetes.client import models  # a layout without __all__: ask the package itself

    return frozenset(name for name in dir(models) if name[:1].isupper())


# (group, version, kind, plural, namespaced, etcd prefix or "" for the plural, short names).
# Versions are the ones a 1.3x API server serves by default (its preferred version).
_BUILT_IN: tuple[tuple[str, str, str, str, bool, str, tuple[str, ...]], ...] = (
    ("", "v1", "ConfigMap", "configmaps", True, "", ("cm",)),
    ("", "v1", "Endpoints", "endpoints", True, "services/endpoints", ("ep",)),
    ("", "v1", "Event", "events", True, "", ("ev",)),
    ("", "v1", "LimitRange", "limitranges", True, "", ("limits",)),
    ("", "v1", "Namespace", "namespaces", False, "", ("ns",)),
    ("", "v1", "Node", "nodes", False, "minions", ("no",)),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, "", ("pvc",)),
    ("", "v1", "PersistentVolume", "persistentvolumes", False, "", ("pv",)),
    ("", "v1", "Pod", "pods", True, "", ("po",)),
    ("", "v1", "PodTemplate", "podtemplates", True, "", ()),
    ("", "v1", "ReplicationController", "replicationcontrollers", True, "controllers", ("rc",)),
    ("", "v1", "ResourceQuota", "resourcequotas", True, "", ("quota",)),
    ("", "v1", "Secret", "secrets", True, "", ()),
    ("", "v1", "ServiceAccount", "serviceaccounts", True, "", ("sa",)),
    ("", "v1", "Service", "services", True, "services/specs", ("svc",)),
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
     "mutatingwebhookconfigurations", False, "", ()),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
     "validatingwebhookconfigurations", False, "", ()),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy",
     "validatingadmissionpolicies", False, "", ()),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding",
     "validatingadmissionpolicybindings", False, "", ()),
    ("admissionregistration.k8s.io", "v1beta1", "MutatingAdmissionPolicy",
     "mutatingadmissionpolicies", False, "", ()),
    ("admissionregistration.k8s.io", "v1beta1", "MutatingAdmissionPolicyBinding",
     "mutatingadmissionpolicybindings", False, "", ()),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
     False, "apiextensions.k8s.io/customresourcedefinitions", ("crd", "crds")),
    ("apiregistration.k8s.io", "v1", "APIService", "apiservices", False,
     "apiregistration.k8s.io/apiservices", ()),
    ("apps", "v1", "ControllerRevision", "controllerrevisions", True, "", ()),
    ("apps", "v1", "DaemonSet", "daemonsets", True, "", ("ds",)),
    ("apps", "v1", "Deployment", "deployments", True, "", ("deploy",)),
    ("apps", "v1", "ReplicaSet", "replicasets", True, "", ("rs",)),
    ("apps", "v1", "StatefulSet", "statefulsets", True, "", ("sts",)),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, "",
     ("hpa",)),
    ("batch", "v1", "CronJob", "cronjobs", True, "", ("cj",)),
    ("batch", "v1", "Job", "jobs", True, "", ()),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
     False, "", ("csr",)),
    ("certificates.k8s.io", "v1beta1", "ClusterTrustBundle", "clustertrustbundles", False, "",
     ()),
    ("coordination.k8s.io", "v1", "Lease", "leases", True, "", ()),
    ("coordination.k8s.io", "v1beta1", "LeaseCandidate", "leasecandidates", True, "", ()),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, "", ()),
    ("events.k8s.io", "v1", "Event", "events", True, "", ("ev",)),
    ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", False, "", ()),
    ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration",
     "prioritylevelconfigurations", False, "", ()),
    ("internal.apiserver.k8s.io", "v1alpha1", "StorageVersion", "storageversions", False, "",
     ()),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False, "", ()),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", True, "ingress", ("ing",)),
    ("networking.k8s.io", "v1", "IPAddress", "ipaddresses", False, "", ("ip",)),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, "", ("netpol",)),
    ("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", False, "", ()),
    ("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False, "", ()),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, "", ("pdb",)),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False, "",
     ()),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, "", ()),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, "", ()),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", True, "", ()),
    ("resource.k8s.io", "v1", "DeviceClass", "deviceclasses", False, "", ()),
    ("resource.k8s.io", "v1", "ResourceClaim", "resourceclaims", True, "", ()),
    ("resource.k8s.io", "v1", "ResourceClaimTemplate", "resourceclaimtemplates", True, "", ()),
    ("resource.k8s.io", "v1", "ResourceSlice", "resourceslices", False, "", ()),
    ("resource.k8s.io", "v1alpha3", "DeviceTaintRule", "devicetaintrules", False, "", ()),
    ("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, "", ("pc",)),
    ("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False, "", ()),
    ("storage.k8s.io", "v1", "CSINode", "csinodes", False, "", ()),
    ("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", True, "", ()),
    ("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, "", ("sc",)),
    ("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False, "", ()),
    ("storage.k8s.io", "v1", "VolumeAttributesClass", "volumeattributesclasses", False, "",
     ("vac",)),
    ("storagemigration.k8s.io", "v1beta1", "StorageVersionMigration",
     "storageversionmigrations", False, "", ()),
)  # fmt: skip


def built_in_resources() -> list[Resource]:
    return [
        Resource(
            group=group,
            version=version,
            kind=kind,
            plural=plural,
            namespaced=namespaced,
            etcd_prefix=prefix or plural,
            short_names=short_names,
            model=_model_name(group, version, kind),
        )
        for group, version, kind, plural, namespaced, prefix, short_names in _BUILT_IN
    ]


def custom_resource(
    group: str, version: str, kind: str, plural: str, *, namespaced: bool, **extra: Any
) -> Resource:
    """A custom resource: stored under ``<group>/<plural>`` as the API server does."""
    return Resource(group, version, kind, plural, namespaced, f"{group}/{plural}", **extra)


def from_crd(crd: Mapping[str, Any]) -> Resource:
    """The resource a stored CustomResourceDefinition defines (its storage version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = spec.get("versions") or []
    storage = [v.get("name") for v in versions if v.get("storage")]
    version = storage[0] if storage else (versions[0].get("name") if versions else "v1")
    return custom_resource(
        str(spec.get("group", "")),
        str(version),
        str(names.get("kind", "")),
        str(names.get("plural", "")),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
    )


def answers_to(resource: Resource, name: str) -> bool:
    """Whether kubectl would take ``name`` for this resource."""
    names = {resource.plural, resource.singular, resource.kind, resource.group_resource}
    names.update(resource.short_names)
    return name.strip().lower() in {n.lower() for n in names}


def unknown_resource(what: str) -> errors.BadRequest:
    return errors.BadRequest(f'the server doesn\'t have a resource type "{what}"')


class ResourceRegistry:
    """Resolves the names kubectl accepts (plural, singular, kind, short name,
    "plural.group", a model class) to a resource. Thread-safe. A registry made with a
    ``parent`` holds its own resources (a store's discovered custom resources) and falls back
    to the parent's, which stays unchanged."""

    def __init__(
        self, resources: Iterable[Resource] = (), *, parent: ResourceRegistry | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._parent = parent
        self._resources: list[Resource] = []
        self._by_name: dict[str, Resource] = {}
        self._by_gvk: dict[tuple[str, str], Resource] = {}
        self._by_model: dict[str, Resource] = {}
        for resource in resources:
            self.register(resource)

    def register(self, resource: Resource) -> None:
        """Adds a resource; the first registered keeps a shared short name or kind (so "events"
        stays core's Event, as kubectl resolves it)."""
        with self._lock:
            self._resources = [
                r for r in self._resources if r.group_resource != resource.group_resource
            ]
            self._resources.append(resource)
            self._by_gvk[(resource.api_version, resource.kind)] = resource
            self._by_name[resource.group_resource.lower()] = resource
            self._by_name[f"{resource.plural}.{resource.version}.{resource.group}".lower()] = (
                resource
            )
            names = (resource.plural, resource.singular, resource.kind, *resource.short_names)
            for name in names:
                self._by_name.setdefault(name.lower(), resource)
                if resource.group:
                    self._by_name.setdefault(f"{name}.{resource.group}".lower(), resource)
            if resource.model:
                self._by_model[resource.model] = resource

    def resources(self) -> list[Resource]:
        with self._lock:
            own = list(self._resources)
        if self._parent is None:
            return own
        mine = {r.group_resource for r in own}
        return [r for r in self._parent.resources() if r.group_resource not in mine] + own

    def resolve(self, what: str | type | Resource) -> Resource:
        if isinstance(what, Resource):
            return what
        if isinstance(what, type):
            found = self.for_model(what.__name__)
            if found is None:
                raise unknown_resource(what.__name__)
            return found
        found = self.find(what)
        if found is None:
            raise unknown_resource(what)
        return found

    def find(self, name: str) -> Resource | None:
        with self._lock:
            found = self._by_name.get(name.strip().lower())
        if found is None and self._parent is not None:
            return self._parent.find(name)
        return found

    def for_gvk(self, api_version: str, kind: str) -> Resource | None:
        with self._lock:
            found = self._by_gvk.get((api_version, kind))
        if found is None and self._parent is not None:
            return self._parent.for_gvk(api_version, kind)
        return found

    def for_model(self, model: str) -> Resource | None:
        with self._lock:
            found = self._by_model.get(model)
        if found is None and self._parent is not None:
            return self._parent.for_model(model)
        return found

    def for_object(self, obj: KubeObject) -> Resource:
        """The resource of an object, by its apiVersion and kind (a model without them: by its
        class)."""
        api_version, kind = type_meta(obj)
        if not kind:
            found = self.for_model(type(obj).__name__)
            if found is not None:
                return found
            raise errors.BadRequest("Object 'Kind' is missing in the object")
        if not api_version:
            raise errors.BadRequest("Object 'apiVersion' is missing in the object")
        found = self.for_gvk(api_version, kind)
        if found is None:
            raise no_match(api_version, kind)
        return found


def no_match(api_version: str, kind: str) -> errors.BadRequest:
    return errors.BadRequest(f'no matches for kind "{kind}" in version "{api_version}"')


def type_meta(obj: KubeObject) -> tuple[str, str]:
    """(apiVersion, kind) of a model or a dict ("" when missing)."""
    if isinstance(obj, Mapping):
        return str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    return str(getattr(obj, "api_version", "") or ""), str(getattr(obj, "kind", "") or "")


DEFAULT_REGISTRY = ResourceRegistry(built_in_resources())
