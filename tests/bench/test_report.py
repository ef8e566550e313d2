"""docs/benchmarks.md's figures as bench/report.py writes them: the blocks of a run, byte for byte, spliced
into the hand-written document without touching a line outside them.

No benchmark runs here: each fixture in report_fixtures/ is the results JSON of a `python -m bench` run (the
shapes bench/run.py, goodput.py, cost.py and telemetry.py produce), and its golden .md is what `blocks()` made of
it. full.json is a full --extended run with the SDK and section 6; quick.json a --quick --skip-sdk run with a
budget from an older rule and missed targets; partial.json one drain, a cost section without certstate and a
profile.

After changing a table on purpose, rewrite the golden files with `.venv/bin/python -m tests.bench.test_report`
and review their diff.
"""

# ruff: noqa: RUF001 - the tables' multiplication signs are meant

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.markdown import markers, render, splice
from bench.report import blocks
from bench.tenants_report import tenants_blocks

FIXTURES = Path(__file__).parent / "report_fixtures"
NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
REPORT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def results(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def rendered(name: str) -> str:
    return render(blocks(results(name)))


def tenant_results() -> dict[str, Any]:
    """A `bench.tenants.run` result of three drains and the cost at 1 and 50 tenants (figures made up)."""
    per_tenant = {
        k: {"backlog": 100, "goodput": 0.97, "throttled": 0, "earlyRetries": 0, "entraTokens": 1} for k in "ABC"
    }
    drain = {"scenario": {"name": "mixed"}, "perTenant": per_tenant, "aggregateGoodput": 0.96, "lost": 0,
             "poisoned": 0, "duplicateOutcomes": 0, "wrongTenant": 0, "crossTenant": 0, "deferralsOrRetries": 0,
             "cpuPerMessageMs": 3.2}  # fmt: skip
    cost = {"cpuMedianMs": 0.9, "bestRoundMedianMs": 0.8, "bytesPerTenant": 20480, "peakRssMb": 60,
            "entraTokenRequests": 50, "exchangeTokens": 1, "graphConnections": 1, "rounds": 3, "messages": 1500,
            "calibrationMs": 50.0}  # fmt: skip
    return {"command": ".venv/bin/python -m bench.tenants", "date": "2026-12-07 07:00 UTC", "drains": [drain] * 3,
            "cost": {"1": cost, "50": cost, "1, Session.request": cost}}  # fmt: skip


def test_every_fixture_has_its_golden_blocks() -> None:
    assert NAMES == ["full", "partial", "quick"]
    assert sorted(path.stem for path in FIXTURES.glob("*.md")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_blocks_are_byte_for_byte_the_golden_ones(name: str) -> None:
    assert rendered(name) == (FIXTURES / f"{name}.md").read_bytes().decode("utf-8")  # bytes: no newline translation


def test_the_committed_report_marks_every_block_a_run_writes() -> None:
    written = {*blocks(results("full")), *tenants_blocks(tenant_results())}
    lines = set(REPORT.read_text(encoding="utf-8").splitlines())
    assert len(written) >= 12
    assert sorted(name for name in written if not set(markers(name)) <= lines) == []


def test_a_run_replaces_its_blocks_and_leaves_every_other_line_as_written() -> None:
    document = REPORT.read_text(encoding="utf-8")
    figures = blocks(results("quick"))
    spliced = splice(document, figures)
    assert splice(spliced, figures) == spliced

    def outside(text: str) -> list[str]:
        kept, inside = [], False
        for line in text.splitlines():
            if line.startswith(("<!-- bench:", "<!-- /bench:")):
                inside = line.startswith("<!-- bench:") and line.removeprefix("<!-- bench:")[:-4] in figures
                continue
            if not inside:
                kept.append(line)
        return kept

    assert outside(spliced) == outside(document)
    assert f"*`{results('quick')['command']}`, {results('quick')['date']}" in spliced


def test_a_block_the_document_does_not_mark_is_refused() -> None:
    with pytest.raises(ValueError, match="no block 'cost'"):
        splice("# Benchmarks\n\nprose\n", {"cost": ["| a |"]})


def test_the_tenant_blocks_carry_their_targets() -> None:
    tenants = tenants_blocks(tenant_results())
    assert list(tenants) == ["tenants", "tenants-targets", "tenants-cost"]
    assert "| aggregate goodput ≥ 95 % of 3 × the limit (mixed backlogs) | 96.0 % | met |" in tenants["tenants-targets"]


if __name__ == "__main__":
    for fixture in NAMES:
        (FIXTURES / f"{fixture}.md").write_bytes(rendered(fixture).encode("utf-8"))
        print(f"wrote {FIXTURES / fixture}.md")
