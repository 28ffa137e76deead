"""What the ``etcdpy k8s`` commands are configured with: the contract's ``ETCDPY_K8S_*`` (and a
few of etcd's ``ETCD_*``) variables, each also a flag named like it (``--replicas`` for
``ETCDPY_K8S_REPLICAS``) that wins over the environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

_Number = TypeVar("_Number", int, float)


class SettingsError(ValueError):
    """A bad or missing setting; the message names the variable and the flag."""


@dataclass(frozen=True, slots=True)
class Option:
    attr: str
    env: str
    default: str | None  # None: required by the commands that read it
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


def _k8s(attr: str, default: str | None, help: str) -> Option:
    return Option(attr, "ETCDPY_K8S_" + attr.upper(), default, help)


OPTIONS: tuple[Option, ...] = (
    _k8s("pod_name", None, "this pod's name, <statefulset>-<ordinal> (downward API)"),
    _k8s("namespace", "default", "this pod's namespace (downward API)"),
    _k8s("service", None, "the headless Service of the StatefulSet"),
    _k8s("cluster_domain", "cluster.local", "the cluster's DNS domain"),
    _k8s("replicas", None, "the StatefulSet's replicaCount"),
    _k8s("initial_cluster_state", "new", "new or existing"),
    _k8s("client_scheme", "http", "http or https"),
    _k8s("peer_scheme", "http", "http or https"),
    _k8s("client_port", "2379", "the client port of every pod"),
    _k8s("peer_port", "2380", "the peer port of every pod"),
    _k8s("metrics_port", "9090", "the metrics port of every pod"),
    _k8s("snapshot_file", "", "bootstrap a new cluster from this snapshot file"),
    _k8s("root_password", "", "set up auth with this root password"),
    _k8s("endpoints", "", "comma-separated client URLs (Jobs)"),
    _k8s("cacert", "", "the CA that signs the members' client certificates"),
    _k8s("cert", "", "the client certificate"),
    _k8s("key", "", "the client certificate's key"),
    _k8s("user", "", "the user to authenticate as"),
    _k8s("password", "", "that user's password"),
    _k8s("snapshot_dir", "/snapshots", "where `snapshot` writes db-<time> files"),
    _k8s("snapshot_keep", "3", "how many snapshot files to keep"),
    _k8s("dns_timeout", "180", "seconds to wait for this pod's DNS name"),
    _k8s("join_timeout", "300", "seconds to wait for the cluster (add, promote, existing)"),
    _k8s("removed_wait", "300", "seconds a removed member waits for its pod's deletion"),
    _k8s("dial_timeout", "2", "seconds per connection attempt"),
    _k8s("command_timeout", "10", "seconds per request"),
    Option("data_dir", "ETCD_DATA_DIR", "/var/lib/etcdpy/data", "the member's data dir"),
    Option("trusted_ca_file", "ETCD_TRUSTED_CA_FILE", "", "client TLS CA (etcd's flag)"),
    Option("cert_file", "ETCD_CERT_FILE", "", "client TLS certificate (etcd's flag)"),
    Option("key_file", "ETCD_KEY_FILE", "", "client TLS key (etcd's flag)"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    pod_name: str | None
    namespace: str
    service: str | None
    cluster_domain: str
    replicas: str | None
    initial_cluster_state: str
    client_scheme: str
    peer_scheme: str
    client_port: str
    peer_port: str
    metrics_port: str
    snapshot_file: str
    root_password: str
    endpoints: str
    cacert: str
    cert: str
    key: str
    user: str
    password: str
    snapshot_dir: str
    snapshot_keep: str
    dns_timeout: str
    join_timeout: str
    removed_wait: str
    dial_timeout: str
    command_timeout: str
    data_dir: str
    trusted_ca_file: str
    key_file: str
    cert_file: str

    # -- typed views, each with a clear error -------------------------------------------------

    def required(self, attr: str) -> str:
        value = getattr(self, attr)
        if not value:
            option = _option(attr)
            raise SettingsError(f"{option.env} (or {option.flag}) is required")
        return str(value)

    def integer(self, attr: str, minimum: int = 0) -> int:
        value = self._number(attr, int)
        if value < minimum:
            option = _option(attr)
            raise SettingsError(f"{option.env} (or {option.flag}): {value} is below {minimum}")
        return value

    def seconds(self, attr: str) -> float:
        value = self._number(attr, float)
        option = _option(attr)
        if not value > 0:
            raise SettingsError(f"{option.env} (or {option.flag}): must be above 0")
        return value

    def _number(self, attr: str, kind: type[_Number]) -> _Number:
        raw = self.required(attr)
        try:
            return kind(raw)
        except ValueError:
            option = _option(attr)
            raise SettingsError(
                f"{option.env} (or {option.flag}): {raw!r} is not a number"
            ) from None

    def choice(self, attr: str, choices: Sequence[str]) -> str:
        value = self.required(attr)
        if value not in choices:
            option = _option(attr)
            raise SettingsError(
                f"{option.env} (or {option.flag}): {value!r} is not one of {', '.join(choices)}"
            )
        return value

    def endpoint_list(self) -> list[str]:
        endpoints = [e.strip() for e in self.required("endpoints").split(",") if e.strip()]
        if not endpoints:
            raise SettingsError("ETCDPY_K8S_ENDPOINTS (or --endpoints) names no endpoint")
        return endpoints

    @property
    def data_path(self) -> Path:
        return Path(self.required("data_dir"))


def _option(attr: str) -> Option:
    return next(o for o in OPTIONS if o.attr == attr)


def add_flags(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        default = f" (default {option.default!r})" if option.default else ""
        parser.add_argument(
            option.flag, dest=option.attr, default=None, metavar="VALUE",
            help=f"{option.help}; env {option.env}{default}",
        )  # fmt: skip


def from_sources(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Flags first, then the environment, then the defaults."""
    values: dict[str, str | None] = {}
    for option in OPTIONS:
        flag = getattr(args, option.attr, None)
        values[option.attr] = flag if flag is not None else environ.get(option.env, option.default)
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values)  # type: ignore[arg-type]
