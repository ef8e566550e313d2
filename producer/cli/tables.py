"""Fixed-width tables (the header once, every row under it) or JSON Lines, for outcomes and queue messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from producer.cli.console import out, out_json
from producer.cli.options import HOME
from producer.cli.scan import error_code, tenant_id
from shared.contract.echo import bounded

Columns = Sequence[tuple[str, int]]

OUTCOME_COLUMNS: Final = (
    ("STATUS", 9),
    ("TENANT", 13),
    ("CORRELATION ID", 28),
    ("MESSAGE ID", 36),
    ("DEQ", 3),
    ("HTTP", 4),
    ("ERROR", 22),
    ("COMPLETED AT", 24),
)
WARNING_INDENT: Final = "  warning: "


def _cell(value: object, width: int) -> str:
    """Escaped first (`console.safe`), so the width counts what shows; a cut never splits an escape."""
    return "-" if value is None or value == "" else bounded(str(value), width)


def row(columns: Columns, values: Sequence[object]) -> str:
    """One line of a table, each value cut to its column's width."""
    return "  ".join(_cell(v, w).ljust(w) for v, (_, w) in zip(values, columns, strict=True)).rstrip()


def outcome_lines(outcome: dict[str, Any]) -> list[str]:
    """An outcome as a table line, then one indented line per warning Graph's answer or the message earned."""
    values = [
        outcome.get("status"),
        tenant_id(outcome) or HOME,
        outcome.get("correlationId"),
        outcome.get("messageId"),
        outcome.get("dequeueCount"),
        outcome.get("httpStatus"),
        error_code(outcome),
        outcome.get("completedAt"),
    ]
    warnings = outcome.get("warnings")
    notes = [f"{WARNING_INDENT}{w}" for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []
    return [row(OUTCOME_COLUMNS, values), *notes]


class Printer:
    """Items as a fixed-width table (header once) or, with `--json`, one JSON object per line."""

    def __init__(
        self,
        as_json: bool,
        columns: Columns = OUTCOME_COLUMNS,
        lines: Callable[[dict[str, Any]], list[str]] = outcome_lines,
    ) -> None:
        self.as_json = as_json
        self.printed = 0
        self._columns = columns
        self._lines = lines
        self._headed = as_json

    def header(self) -> None:
        """Print the header now (once), e.g. before following an empty queue."""
        if not self._headed:
            out(row(self._columns, [name for name, _ in self._columns]))
            self._headed = True

    def __call__(self, item: dict[str, Any]) -> None:
        """Print one item: its table lines, or itself as JSON."""
        self.header()
        if self.as_json:
            out_json(item)
        else:
            for line in self._lines(item):
                out(line)
        self.printed += 1
