"""Runs the real helm (installed into .venv/bin by `make k8s-tools`) on the chart: lint, render
with a value set, and the rendered manifests as dicts. The chart tests (this package) share it."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "etcdpy"
BIN = ROOT / ".venv" / "bin"
HELM = BIN / "helm"
KUBERNETES_VALIDATE = BIN / "kubernetes-validate"
RELEASE = "store"
NAMESPACE = "kv"
FULLNAME = f"{RELEASE}-etcdpy"
HELM_TIMEOUT = 60.0

Manifest = dict[str, Any]


def helm_binary() -> Path:
    """The helm binary; a clear failure (never a skip) when `make k8s-tools` has not run."""
    if not HELM.exists():
        raise AssertionError(f"{HELM} is missing: run `make k8s-tools` (make test does)")
    return HELM


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str


def run_helm(*args: str, values: Mapping[str, Any] | None = None) -> HelmResult:
    """helm ARGS, with VALUES passed as a values file (JSON is YAML)."""
    with tempfile.TemporaryDirectory(prefix="etcdpy-chart-") as tmp:
        command = [str(helm_binary()), *args]
        if values is not None:
            values_file = Path(tmp) / "values.json"
            values_file.write_text(json.dumps(values))
            command += ["--values", str(values_file)]
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=HELM_TIMEOUT, check=False
        )
    return HelmResult(proc.returncode, proc.stdout, proc.stderr)


def template_text(values: Mapping[str, Any], *extra: str) -> str:
    """The rendered chart (hooks and the test pod included); fails with helm's message."""
    result = run_helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra, values=values
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(values: Mapping[str, Any], *extra: str) -> list[Manifest]:
    return parse(template_text(values, *extra))


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} named {name}: {[m['kind'] for m in manifests]}"
    return found[0]


def pod_spec(manifest: Manifest) -> Manifest:
    """The pod spec of a StatefulSet, Job, CronJob or Pod."""
    kind = manifest["kind"]
    if kind == "Pod":
        spec: Manifest = manifest["spec"]
    elif kind == "CronJob":
        spec = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = manifest["spec"]["template"]["spec"]
    return spec


def container(manifest: Manifest, name: str | None = None) -> Manifest:
    containers: list[Manifest] = pod_spec(manifest)["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def env_of(container_spec: Manifest) -> dict[str, Manifest]:
    """A container's env entries by name (each the whole EnvVar)."""
    return {entry["name"]: entry for entry in container_spec.get("env", [])}
