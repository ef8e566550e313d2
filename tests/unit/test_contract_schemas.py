"""The committed JSON Schemas are exactly what the models generate."""

from __future__ import annotations

import pytest

from producer.schemas import SCHEMA_DIR, SCHEMAS, render


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_the_models(name: str):
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert committed == render(name), f"schemas/{name}.schema.json drifted: run python -m producer.schemas"
