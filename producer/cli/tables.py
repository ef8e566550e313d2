"""Outcomes as a fixed-width table (the header once) or as JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from producer.cli.console import out
from producer.cli.scan import error_code

COLUMNS: Final = (
    ("STATUS", 9),
    ("CORRELATION ID", 28),
    ("MESSAGE ID", 36),
    ("DEQ", 3),
    ("HTTP", 4),
    ("ERROR", 22),
    ("COMPLETED AT", 24),
)


def _cell(value: object, width: int) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def row(values: Sequence[object]) -> str:
    """One line of the table, each value cut to its column's width."""
    return "  ".join(_cell(v, w).ljust(w) for v, (_, w) in zip(values, COLUMNS, strict=True)).rstrip()


def outcome_row(outcome: dict[str, Any]) -> str:
    """An outcome as a table line."""
    return row(
        [
            outcome.get("status"),
            outcome.get("correlationId"),
            outcome.get("messageId"),
            outcome.get("dequeueCount"),
            outcome.get("httpStatus"),
            error_code(outcome),
            outcome.get("completedAt"),
        ]
    )


class Printer:
    """Rows as a fixed-width table (header once) or JSON Lines."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.printed = 0
        self._headed = as_json

    def header(self) -> None:
        """Print the header now (once), e.g. before following an empty queue."""
        if not self._headed:
            out(row([name for name, _ in COLUMNS]))
            self._headed = True

    def __call__(self, outcome: dict[str, Any]) -> None:
        """Print one outcome."""
        self.header()
        out(json.dumps(outcome, ensure_ascii=False) if self.as_json else outcome_row(outcome))
        self.printed += 1
