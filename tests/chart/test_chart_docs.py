"""Every value is documented: each leaf of values.yaml falls under a `## @param` comment, and
each @param is a row of the chart README's table."""

from __future__ import annotations

import re
from typing import Any

import yaml  # type: ignore[import-untyped]

from tests.chart.helm_chart import CHART

PARAM = re.compile(r"^\s*## @param (\S+) ", re.MULTILINE)


def leaves(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [
            path
            for key, child in value.items()
            for path in leaves(child, f"{prefix}.{key}" if prefix else str(key))
        ]
    return [prefix]


def test_every_value_has_a_param_and_a_readme_row() -> None:
    text = (CHART / "values.yaml").read_text()
    params = PARAM.findall(text)
    assert len(params) == len(set(params))
    for leaf in leaves(yaml.safe_load(text)):
        parts = leaf.split(".")
        prefixes = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
        assert prefixes & set(params), f"{leaf} has no ## @param line in values.yaml"
    readme = (CHART / "README.md").read_text()
    for param in params:
        assert f"| `{param}` |" in readme, f"{param} is missing from helm/etcdpy/README.md"
