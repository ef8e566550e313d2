"""How text that someone else wrote (a producer's values, Graph's answers) is echoed back.

Whatever reaches an outcome or a log line must serialize (no lone UTF-16 surrogates, which
UTF-8 cannot encode) and stay small (a 60,000-character value must not reappear in full).
docs/outcomes.md describes the forms.
"""

from __future__ import annotations

import re
from typing import Any, Final

LONG_VALUE_CHARS: Final = 64
"""A value longer than this is shown as an excerpt, never in full."""
EXCERPT_CHARS: Final = 32

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with each lone surrogate written as its backslash escape (everything else unchanged)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown(value: str) -> str:
    """A quoted, printable form of a bad value for an error message: short ones whole, long ones cut.

    `'abc'`, or `'<first 32 characters>…' (60000 characters)` past 64 characters.
    """
    if len(value) <= LONG_VALUE_CHARS:
        return repr(value)
    head = repr(value[:EXCERPT_CHARS])
    return f"{head[:-1]}…{head[-1]} ({len(value)} characters)"


def path_part(key: str) -> str:
    """A JSON key as part of a field name: printable, and an excerpt past 64 characters."""
    return printable(key) if len(key) <= LONG_VALUE_CHARS else shown(key)


def bounded(text: str, limit: int) -> str:
    """Printable and at most `limit` characters (the last one `…` when cut), for Graph's texts and ids."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lone_surrogate_path(document: Any) -> str | None:  # noqa: ANN401 - any decoded JSON
    """The path (`update.certificateIssuer`, `a[2]`) of a string or key in decoded JSON holding a lone surrogate.

    Iterative, so a document nested as deep as `json.loads` allows cannot exhaust the stack here.
    """
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        path, node = pending.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return path or "message"
        elif isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{path_part(key)}" if path else path_part(key)
                if _SURROGATE.search(key):
                    return where
                pending.append((where, value))
        elif isinstance(node, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(node))
    return None
