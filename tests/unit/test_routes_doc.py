"""docs/routes.md's tables are exactly what the navigation graph generates."""

from __future__ import annotations

import pytest

from producer.routes_doc import BEGIN, END, ROUTES_DOC, render, tables
from shared.contract import navigation as nav
from tests.support.routes import TRIPLES


def test_the_committed_routes_page_matches_the_navigation_graph():
    committed = ROUTES_DOC.read_text(encoding="utf-8")
    assert committed == render(committed), "docs/routes.md drifted: run python -m producer.routes_doc"


def test_the_tables_name_every_triple():
    text = tables()
    rows = [line for line in text.splitlines() if line.startswith("| `") and "declared" not in line]
    for owner, navigation, profile_type in TRIPLES:
        section = text.split(f"### `{navigation}`\n", 1)[1].split("###", 1)[0]
        (row,) = [line for line in section.splitlines() if line.startswith(f"| `{owner}`")]
        assert f"`{profile_type}`" in row
    assert len(rows) >= len(nav.HOPS)


def test_a_page_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        render("# Routes\n")
    assert render(f"x\n{BEGIN}stale\n{END}y\n").startswith(f"x\n{BEGIN}\n6 certificate navigations")
