"""The cluster network: a "cluster" namespace holding a bridge, one namespace per pod (and one
for the client) joined to it by a veth pair, and per-namespace hosts files that stand in for
the cluster DNS.

Each namespace's /etc/netns/<ns>/hosts is what ``ip netns exec`` bind-mounts over /etc/hosts:
it is rewritten in place (same inode, fixed size, one write) so running processes see changes,
and resolv.conf names a nameserver on the namespace's own loopback, where nothing listens, so
only the hosts file resolves.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.k8s_harness.cleanup import PREFIX, delete_namespace, ip

HOSTS_FILE_SIZE = 64 * 1024  # padded with a comment so a rewrite is one write of one size
RESOLV_CONF = "nameserver 127.0.0.53\noptions timeout:1 attempts:1\n"


@dataclass(frozen=True)
class Host:
    """One namespace on the bridge: a pod's, a Job's or the client's."""

    namespace: str
    address: str
    bridge_link: str  # the veth end on the bridge, in the cluster namespace


class ClusterNetwork:
    """A /24 on a bridge inside its own namespace; nothing of it is in the host's namespace."""

    def __init__(self) -> None:
        self.tag = PREFIX + secrets.token_hex(3)[:5]
        self.cluster_namespace = f"{self.tag}-net"
        self.bridge = f"{self.tag}br"
        octets = secrets.randbelow(200) + 20, secrets.randbelow(250) + 1
        self.subnet = f"10.{octets[0]}.{octets[1]}"
        self._lock = threading.Lock()
        self._next = 1
        self._free: list[int] = []
        self.hosts: dict[str, Host] = {}
        self._names: dict[str, list[str]] = {}  # address -> host names, for the hosts files

    def create(self) -> None:
        ip("netns", "add", self.cluster_namespace)
        ip("-n", self.cluster_namespace, "link", "set", "lo", "up")
        ip("-n", self.cluster_namespace, "link", "add", self.bridge, "type", "bridge")
        ip("-n", self.cluster_namespace, "link", "set", self.bridge, "up")

    def add_host(self, label: str) -> Host:
        """A new namespace with an address of its own (never reused while the run lasts, as a
        recreated pod gets a new IP)."""
        with self._lock:
            number = self._next
            self._next += 1
        if number > 250:
            raise RuntimeError("the harness network has no address left")
        namespace = f"{self.tag}-{label}-{number}"
        link = f"{self.tag}v{number}"
        host = Host(namespace, f"{self.subnet}.{number}", link)
        etc = Path("/etc/netns") / namespace
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(RESOLV_CONF)
        (etc / "hosts").write_bytes(self._hosts_bytes(host))
        try:
            ip("netns", "add", namespace)
            ip(
                "-n",
                self.cluster_namespace,
                "link",
                "add",
                link,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                namespace,
            )
            ip("-n", self.cluster_namespace, "link", "set", link, "master", self.bridge)
            ip("-n", self.cluster_namespace, "link", "set", link, "up")
            ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        except BaseException:
            delete_namespace(namespace)
            raise
        with self._lock:
            self.hosts[namespace] = host
        return host

    def remove_host(self, host: Host) -> None:
        with self._lock:
            self.hosts.pop(host.namespace, None)
        delete_namespace(host.namespace)  # takes the veth pair with it

    def cut(self, host: Host) -> None:
        """Packets to and from ``host`` vanish (nothing is refused): its bridge port goes down."""
        ip("-n", self.cluster_namespace, "link", "set", host.bridge_link, "down")

    def heal(self, host: Host) -> None:
        ip("-n", self.cluster_namespace, "link", "set", host.bridge_link, "up")

    # -- names --------------------------------------------------------------------------------

    def set_names(self, names: dict[str, list[str]]) -> None:
        """The whole name table (host name -> addresses, in order: an address's first name is
        its reverse lookup), written to every namespace."""
        with self._lock:
            self._names = {k: list(v) for k, v in names.items()}
            hosts = list(self.hosts.values())
        for host in hosts:
            path = Path("/etc/netns") / host.namespace / "hosts"
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                continue  # removed meanwhile
            try:
                os.pwrite(fd, self._hosts_bytes(host), 0)
            finally:
                os.close(fd)

    def _hosts_bytes(self, host: Host) -> bytes:
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        # One line per address, its names in the table's order: the first is what a reverse
        # lookup answers (a pod's fully qualified name, as the cluster DNS's PTR record).
        by_address: dict[str, list[str]] = {}
        for name, addresses in self._names.items():
            for address in addresses:
                by_address.setdefault(address, []).append(name)
        lines.extend(f"{address} {' '.join(names)}" for address, names in by_address.items())
        text = "\n".join(lines) + "\n"
        padding = HOSTS_FILE_SIZE - len(text) - 2
        if padding < 0:
            raise RuntimeError("the harness hosts file outgrew its fixed size")
        return (text + "#" + " " * padding + "\n").encode()

    def remove(self) -> None:
        """Removes every namespace this network made (processes in them are killed by PID)."""
        with self._lock:
            hosts = list(self.hosts.values())
            self.hosts.clear()
        for host in hosts:
            delete_namespace(host.namespace)
        delete_namespace(self.cluster_namespace)
