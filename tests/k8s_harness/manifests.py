"""``helm template`` and the objects it renders.

The helm binary is the one ``make`` installs into .venv/bin (the chart's tooling), else
``$HELM``; a missing helm is a missing tool (a failure in CI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "etcdpy"


def helm_binary() -> str | None:
    for candidate in (os.environ.get("HELM"), str(Path(sys.executable).with_name("helm"))):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("helm")


def render(
    release: str,
    namespace: str,
    values: dict[str, Any],
    *,
    chart: Path = CHART,
    upgrade: bool = False,
) -> Manifests:
    """The chart's manifests for ``values`` (hooks and test pods included), as helm install
    (``upgrade=False``) or helm upgrade would render them."""
    helm = helm_binary()
    if helm is None:
        raise FileNotFoundError("helm is not installed (make installs it into .venv/bin)")
    args = [helm, "template", release, str(chart), "--namespace", namespace, "--values", "-"]
    if upgrade:
        args.append("--is-upgrade")
    proc = subprocess.run(
        args, input=json.dumps(values), capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helm template failed: {proc.stderr.strip()}")
    return Manifests.parse(proc.stdout)


@dataclass
class Manifests:
    """Rendered objects, looked up by kind and name."""

    objects: list[Obj] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Manifests:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]
        return cls(docs)

    @classmethod
    def of(cls, objects: Iterable[Obj]) -> Manifests:
        return cls(list(objects))

    def kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        for obj in self.kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"no {kind} named {name} in the rendered chart")

    def find(self, kind: str, name: str) -> Obj | None:
        try:
            return self.get(kind, name)
        except KeyError:
            return None

    def hooks(self, phase: str) -> list[Obj]:
        """Objects with ``helm.sh/hook`` naming ``phase`` (pre-upgrade, test, ...), by weight."""
        found = [o for o in self.objects if phase in _hook_phases(o)]
        return sorted(found, key=lambda o: int(_annotations(o).get("helm.sh/hook-weight", "0")))

    def without_hooks(self) -> list[Obj]:
        return [o for o in self.objects if not _hook_phases(o)]


def _annotations(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def _hook_phases(obj: Obj) -> list[str]:
    hook = _annotations(obj).get("helm.sh/hook", "")
    phases = [p.strip() for p in hook.split(",") if p.strip()]
    return ["test" if p == "test-success" else p for p in phases]
