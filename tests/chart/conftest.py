"""Each value set rendered once per session: the chart tests read these instead of calling helm."""

from __future__ import annotations

import pytest

from tests.chart.helm_chart import Manifest, parse, template_text
from tests.chart.value_sets import VALUE_SETS


@pytest.fixture(scope="session")
def rendered_texts() -> dict[str, str]:
    return {name: template_text(values) for name, values in VALUE_SETS.items()}


@pytest.fixture(scope="session")
def rendered(rendered_texts: dict[str, str]) -> dict[str, list[Manifest]]:
    return {name: parse(text) for name, text in rendered_texts.items()}
