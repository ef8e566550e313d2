"""docs/benchmarks.md as bench/report.py writes it: byte for byte, for the results of runs of every shape.

No benchmark runs here: each fixture in report_fixtures/ is the results JSON of a `python -m bench` run (the
shapes bench/run.py, goodput.py, cost.py and telemetry.py produce), and its golden .md is what render() wrote
for it. Together they reach every branch of render(): full.json is a full --extended run with the SDK and
section 6 (the committed report's figures); quick.json a --quick --skip-sdk run with a budget from an older
rule, missed targets and telemetry measured in the run itself; older.json results from before timings, ratios,
best-round medians and calibration were recorded, with no drains; partial.json one drain, a cost section
without certstate and a profile.

After changing the report's wording on purpose, rewrite the golden files with
`.venv/bin/python -m tests.bench.test_report` and review their diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import render

FIXTURES = Path(__file__).parent / "report_fixtures"
NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
REPORT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def rendered(name: str) -> str:
    return render(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


def test_every_fixture_has_its_golden_report() -> None:
    assert NAMES == ["full", "older", "partial", "quick"]
    assert sorted(path.stem for path in FIXTURES.glob("*.md")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_report_is_byte_for_byte_the_golden_one(name: str) -> None:
    assert rendered(name) == (FIXTURES / f"{name}.md").read_bytes().decode("utf-8")  # bytes: no newline translation


def test_the_committed_report_has_every_section_heading_render_writes() -> None:
    headings = {line for name in NAMES for line in rendered(name).splitlines() if line.startswith("#")}
    committed = set(REPORT.read_text(encoding="utf-8").splitlines())
    assert len(headings) >= 9
    assert sorted(headings - committed) == []


if __name__ == "__main__":
    for fixture in NAMES:
        (FIXTURES / f"{fixture}.md").write_bytes(rendered(fixture).encode("utf-8"))
        print(f"wrote {FIXTURES / fixture}.md")
