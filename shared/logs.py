"""Structured log lines: one JSON object per event, with the current message's context.

The Functions host ships each record to Application Insights as a trace whose message is
this JSON, so `parse_json(message)` in KQL gives every field. Callers never pass tokens or
update values at INFO; `log_event` has no way to learn them unless a caller passes them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_context: ContextVar[dict[str, Any] | None] = ContextVar("certstate_log_context", default=None)


@contextmanager
def message_context(**fields: Any) -> Iterator[None]:  # noqa: ANN401 - JSON-able values
    """Attach correlationId, messageId and dequeueCount to every event logged inside."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:  # noqa: ANN401
    """Log `event` with the message context and the given fields (None values dropped); never raises."""
    if not logger.isEnabledFor(level):
        return
    record = {"event": event, **(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    try:  # lone surrogates are fine here: json escapes them (ensure_ascii)
        line = json.dumps(record, default=str, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError):  # a huge int, NaN, a cycle: still one parseable line
        line = json.dumps({str(k): _loggable(v) for k, v in record.items()}, separators=(",", ":"))
    logger.log(level, line)


def _loggable(value: Any) -> Any:  # noqa: ANN401 - any value a caller passed
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _INT_BITS else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        text = str(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text[:_TEXT_CHARS]


_INT_BITS = 64
_TEXT_CHARS = 1000
