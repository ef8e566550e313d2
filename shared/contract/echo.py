"""How text that someone else wrote (a producer's values, Graph's answers) is echoed back.

Whatever reaches an outcome or a log line must serialize (no lone UTF-16 surrogates, which
UTF-8 cannot encode), stay small (a 60,000-character value must not reappear in full) and be
safe to print: an outcome is read on terminals (`certstate results`), where an ESC sequence or a
bidi override in a `tenantId` would act instead of show. docs/outcomes.md describes the forms.
"""

from __future__ import annotations

import re
from typing import Any, Final

LONG_VALUE_CHARS: Final = 64
"""A value longer than this is shown as an excerpt, never in full."""
EXCERPT_CHARS: Final = 32

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 (newline and tab too: a table row must stay one row), DEL, C1 (8-bit CSI)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates, which UTF-8 cannot encode
)
_ESCAPE: Final = re.compile(r"\\u[0-9a-f]{4}")


def printable(text: str) -> str:
    """`text` with each lone surrogate written as its backslash escape (everything else unchanged)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escaped(text: str) -> str:
    r"""`text` with each control character, bidi control and lone surrogate written as `\uXXXX`.

    The form JSON and Python use, so it reads the same in a table and inside JSON text (where it
    stands for the character itself); printable text, a backslash included, is left as it is.
    """
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE.sub(lambda match: f"\\u{ord(match[0]):04x}", text)


def shown(value: str) -> str:
    """A quoted, printable form of a bad value for an error message: short ones whole, long ones cut.

    `'abc'`, or `'<first 32 characters>…' (60000 characters)` past 64 characters.
    """
    if len(value) <= LONG_VALUE_CHARS:
        return repr(value)
    head = repr(value[:EXCERPT_CHARS])
    return f"{head[:-1]}…{head[-1]} ({len(value)} characters)"


def path_part(key: str) -> str:
    """A JSON key as part of a field name: `escaped`, and an excerpt past 64 characters."""
    return escaped(key) if len(key) <= LONG_VALUE_CHARS else shown(key)


def bounded(text: str, limit: int) -> str:
    r"""`escaped` and at most `limit` characters (the last one `…` when cut), for Graph's texts and ids.

    A cut never splits an escape: `\u00…` would name no character.
    """
    text = escaped(text)
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    start = head.rfind("\\", len(head) - 5)  # an escape is 6 characters; one cut short starts in the last 5
    if start >= 0 and _ESCAPE.match(text, start):
        head = head[:start]
    return head + "…"


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
