"""Markdown tables, and the marked blocks of docs/benchmarks.md that the benchmarks write them into.

docs/benchmarks.md is written by hand; its figures live in blocks between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->`. A run replaces the blocks it measured, byte for byte, and leaves every other
line, the prose that explains the figures included, as it is. Each block opens with the command and
the date of the run that produced it, so a figure always names its run.
"""

# ruff: noqa: RUF001, RUF002 - the tables are prose; their multiplication and dash signs are meant

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

Blocks = dict[str, list[str]]
"""Block name -> its lines (Markdown), in the order they appear in the document."""


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage; `–` when there is none."""
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def ms(value: float | None, digits: int = 2) -> str:
    """Milliseconds; `–` when there are none."""
    return "–" if value is None else f"{value:.{digits}f} ms"


def ok(met: bool | None) -> str:
    """Whether a target was met."""
    return "–" if met is None else ("met" if met else "**missed**")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def provenance(results: Mapping[str, Any], calibration_ms: float | None = None) -> str:
    """The line that opens a block: the command and the date of the run, and how fast the machine was."""
    speed = "" if calibration_ms is None else f"; calibration workload {calibration_ms:.1f} ms"
    return f"*`{results['command']}`, {results['date']}{speed}.*"


def markers(name: str) -> tuple[str, str]:
    """The lines a block sits between."""
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def splice(document: str, blocks: Mapping[str, list[str]]) -> str:
    """`document` with each named block's lines replaced; a block the document does not mark is an error."""
    lines = document.split("\n")
    for name, content in blocks.items():
        start, end = markers(name)
        if start not in lines or end not in lines:
            msg = f"docs/benchmarks.md has no block {name!r}: add the lines {start} and {end} where it belongs"
            raise ValueError(msg)
        first, last = lines.index(start), lines.index(end)
        if last < first:
            msg = f"the block {name!r} ends before it starts"
            raise ValueError(msg)
        lines[first + 1 : last] = content
    return "\n".join(lines)


def splice_file(path: Path, blocks: Mapping[str, list[str]]) -> None:
    """Replace the named blocks of the document at `path`."""
    path.write_text(splice(path.read_text(encoding="utf-8"), blocks), encoding="utf-8")


def render(blocks: Mapping[str, list[str]]) -> str:
    """The blocks alone, each between its markers (what a run writes, for review and for the golden tests)."""
    out: list[str] = []
    for name, content in blocks.items():
        start, end = markers(name)
        out += [start, *content, end, ""]
    return "\n".join(out)
