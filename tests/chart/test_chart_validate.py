"""helm lint --strict for every value set, and every rendered manifest validated offline by
kubernetes-validate --strict against the chart's minimum Kubernetes version and the newest the
tool knows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from kubernetes_validate.utils import latest_version

from tests.chart.helm_chart import CHART, KUBERNETES_VALIDATE, run_helm
from tests.chart.value_sets import VALUE_SETS


def minimum_kubernetes_version() -> str:
    """The version Chart.yaml's kubeVersion (">=X.Y.Z-0") names."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", chart["kubeVersion"])
    assert match, chart["kubeVersion"]
    return match.group(1)


def test_chart_declares_kubernetes_1_27_and_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (CHART.parents[1] / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == version.group(1)
    assert minimum_kubernetes_version() == "1.27.0"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(name: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), values=VALUE_SETS[name])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.fixture(scope="module")
def manifest_files(
    rendered_texts: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    folder = tmp_path_factory.mktemp("rendered")
    files = []
    for name, text in rendered_texts.items():
        path = folder / f"{name}.yaml"
        path.write_text(text)
        files.append(path)
    return files


@pytest.mark.parametrize("version", [minimum_kubernetes_version(), latest_version()])
def test_every_manifest_validates_strictly(version: str, manifest_files: list[Path]) -> None:
    proc = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", version, *map(str, manifest_files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # One "passed" line per document: nothing was skipped as an unknown kind.
    documents = sum(
        1 for path in manifest_files for doc in yaml.safe_load_all(path.read_text()) if doc
    )
    assert proc.stdout.count(" passed for resource ") == documents, proc.stdout
