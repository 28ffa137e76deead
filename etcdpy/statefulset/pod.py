"""What a pod knows about itself and its set, from its Settings."""

from __future__ import annotations

from dataclasses import dataclass

from etcdpy.statefulset.client import Security
from etcdpy.statefulset.names import PodNameError, PodNames, split_pod_name
from etcdpy.statefulset.settings import Settings, SettingsError


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    ordinal: int
    replicas: int
    initial_state: str
    names: PodNames
    member_security: Security  # how this pod talks to the other members
    dial_timeout: float
    timeout: float

    @property
    def peer_url(self) -> str:
        return self.names.peer_url(self.ordinal)

    @property
    def client_url(self) -> str:
        return self.names.client_url(self.ordinal)

    @property
    def host(self) -> str:
        return self.names.host(self.ordinal)

    def other_client_urls(self, extra: int = 2) -> list[str]:
        """Every pod that may exist but this one: 0..max(replicas, ordinal)+extra."""
        top = max(self.replicas, self.ordinal + 1) + extra
        return [self.names.client_url(i) for i in range(top) if i != self.ordinal]


def pod_from(settings: Settings, user: str = "", password: str = "") -> Pod:
    name = settings.required("pod_name")
    try:
        statefulset, ordinal = split_pod_name(name)
    except PodNameError as err:
        raise SettingsError(f"ETCDPY_K8S_POD_NAME (or --pod-name): {err}") from None
    names = PodNames(
        statefulset=statefulset,
        service=settings.required("service"),
        namespace=settings.required("namespace"),
        cluster_domain=settings.required("cluster_domain").rstrip("."),
        client_scheme=settings.choice("client_scheme", ("http", "https")),
        peer_scheme=settings.choice("peer_scheme", ("http", "https")),
        client_port=settings.integer("client_port", 1),
        peer_port=settings.integer("peer_port", 1),
    )
    # The member's own client certificate is the one it shows the others (Bitnami's way).
    security = Security(
        cacert=settings.trusted_ca_file,
        cert=settings.cert_file,
        key=settings.key_file,
        user=user,
        password=password,
    )
    return Pod(
        name=name,
        ordinal=ordinal,
        replicas=settings.integer("replicas", 1),
        initial_state=settings.choice("initial_cluster_state", ("new", "existing")),
        names=names,
        member_security=security,
        dial_timeout=settings.seconds("dial_timeout"),
        timeout=settings.seconds("command_timeout"),
    )
