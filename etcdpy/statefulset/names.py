"""A StatefulSet pod's names: its ordinal, its DNS name under the headless Service, its URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ORDINAL = re.compile(r"^(?P<set>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<ordinal>[0-9]+)$")


class PodNameError(ValueError):
    """A pod name that is not ``<statefulset>-<ordinal>``."""


def split_pod_name(pod: str) -> tuple[str, int]:
    """``etcdpy-2`` -> (``etcdpy``, 2); a name without an ordinal raises PodNameError."""
    match = _ORDINAL.match(pod)
    if match is None:
        raise PodNameError(f"pod name {pod!r} is not <statefulset>-<ordinal>")
    return match["set"], int(match["ordinal"])


@dataclass(frozen=True, slots=True)
class PodNames:
    """How the pods of one StatefulSet are reached (the contract's DNS names and ports)."""

    statefulset: str
    service: str  # the headless Service
    namespace: str
    cluster_domain: str
    client_scheme: str
    peer_scheme: str
    client_port: int
    peer_port: int

    def pod(self, ordinal: int) -> str:
        return f"{self.statefulset}-{ordinal}"

    def host(self, ordinal: int) -> str:
        return f"{self.pod(ordinal)}.{self.service}.{self.namespace}.svc.{self.cluster_domain}"

    def client_url(self, ordinal: int) -> str:
        return f"{self.client_scheme}://{self.host(ordinal)}:{self.client_port}"

    def peer_url(self, ordinal: int) -> str:
        return f"{self.peer_scheme}://{self.host(ordinal)}:{self.peer_port}"

    def initial_cluster(self, ordinals: range) -> str:
        return ",".join(f"{self.pod(i)}={self.peer_url(i)}" for i in ordinals)

    def ordinal_of_url(self, url: str) -> int | None:
        """The ordinal of a pod of this set named by ``url`` (peer or client), else None."""
        host = url.split("://", 1)[-1].rsplit(":", 1)[0]
        first = host.split(".", 1)[0]
        try:
            statefulset, ordinal = split_pod_name(first)
        except PodNameError:
            return None
        return ordinal if statefulset == self.statefulset else None
