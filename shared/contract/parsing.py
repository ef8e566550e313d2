"""From queue bytes to a validated `UpdateMessage`, or a `MessageRejected` that says why.

The app runs with `messageEncoding: none`, so the body is whatever the producer stored:
raw JSON text (azure-storage-queue's default, Logic Apps) or base64 of it (the Functions
default, older producers). Both are accepted; nothing is poisoned for its encoding.
"""

from __future__ import annotations

import binascii
import difflib
import json
import math
import re
import sys
from base64 import b64decode
from collections.abc import Iterable
from typing import Any, NoReturn, cast

from pydantic import ValidationError

from shared.contract.echo import EXCERPT_CHARS, LONG_VALUE_CHARS, lone_surrogate_path, path_part, shown
from shared.contract.errors import ErrorCode, FieldError, MessageRejected
from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.contract.messages import KNOWN_MESSAGE_FIELDS, KNOWN_UPDATE_FIELDS, UpdateMessage

_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")  # fullmatch: `$` would let a final newline through


def decode_body(body: bytes) -> dict[str, Any]:
    """Return the message's JSON object, whichever of the two encodings it came in."""
    text = _as_text(body, "message")
    stripped = text.strip()
    if not stripped:
        _malformed("message is empty")
    compact = stripped.encode("ascii", "ignore")
    if not stripped.startswith("{") and _BASE64.fullmatch(compact) and len(compact) % 4 == 0:
        try:
            stripped = _as_text(b64decode(compact, validate=True), "base64-decoded message").strip()
        except binascii.Error:
            _malformed("message is neither a JSON object nor base64 of one")
    try:
        document = json.loads(
            stripped,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
            parse_int=_integer,
            parse_float=_finite,
        )
    except (ValueError, RecursionError) as err:  # JSONDecodeError, the hooks' refusals, any other ValueError
        _malformed(f"message is not valid JSON: {err}")
    if not isinstance(document, dict):
        _malformed(f"message must be a JSON object, not {type(document).__name__}")
    if stripped.count("{") + stripped.count("[") > MAX_NESTING and _depth(document) > MAX_NESTING:
        _malformed(f"message is not valid JSON here: nested deeper than {MAX_NESTING} levels")
    if "\\u" in stripped and (where := lone_surrogate_path(document)) is not None:  # only escapes make them
        raise MessageRejected(
            code=ErrorCode.MALFORMED_MESSAGE,
            message=f"{where}: {_LONE_SURROGATE}",
            details=[FieldError(field=where, message=_LONE_SURROGATE)],
        )
    return cast("dict[str, Any]", document)


MAX_NESTING = 64
"""How deep a message may nest: the contract needs three levels. Python's parser sets no bound of its own
that holds on every version (3.11 stops near 1,000 levels with RecursionError, 3.13 parses far deeper)."""


def _depth(document: object) -> int:
    """How deeply `document` nests, without recursion (an adversarial depth must not exhaust the stack)."""
    deepest, level = 0, [(document, 1)]
    while level:
        node, depth = level.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        level.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


_LONE_SURROGATE = (
    "holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair), which is not text; "
    "Graph cannot store it either"
)


def parse_message(document: dict[str, Any]) -> UpdateMessage:
    """Validate a decoded message against the contract, naming every field at fault.

    The summary repeats the first reason only when that reason quotes no value the producer sent,
    so no bad value is printed twice; `details` has every reason, long values cut to an excerpt.
    """
    try:
        return UpdateMessage.from_wire(document)
    except ValidationError as err:
        faults = [
            _field_error(e["loc"], e["type"], e["msg"], e.get("input"), suggest=i < _SUGGESTIONS)
            for i, e in enumerate(err.errors(include_url=False))
        ]
        details = [detail for detail, _ in faults]
        first, quotes_value = faults[0]
        notes = [f"and {len(details) - 1} more"] if len(details) > 1 else []
        notes += ["see details"] if quotes_value else []
        summary = f"{first.field} is invalid" if quotes_value else f"{first.field}: {first.message}"
        summary += f" ({'; '.join(notes)})" if notes else ""
        raise MessageRejected(code=ErrorCode.VALIDATION_FAILED, message=summary, details=details) from None


class _NotJsonError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key is ambiguous (which value did the producer mean?), so it is refused."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            msg = f"duplicate key {shown(key)}"
            raise _NotJsonError(msg)
        result[key] = value
    return result


def _no_constants(name: str) -> Any:  # noqa: ANN401 - json's hook signature
    msg = f"{name} is not JSON"
    raise _NotJsonError(msg)


def _integer(text: str) -> int:
    """Python reads at most `sys.get_int_max_str_digits()` digits; say so rather than fail obscurely."""
    digits = len(text.lstrip("-"))
    if digits > (limit := sys.get_int_max_str_digits()) > 0:
        msg = f"an integer of {digits} digits is longer than the {limit} digits read"
        raise _NotJsonError(msg)
    return int(text)


def _finite(text: str) -> float:
    """`1e999` is valid JSON but no finite number: neither this service nor Graph can hold it."""
    value = float(text)
    if not math.isfinite(value):
        msg = f"the number {shown(text)} is out of range"
        raise _NotJsonError(msg)
    return value


def require_size(data: bytes, what: str) -> None:
    """Refuse more than a queue message holds (`malformedMessage`), for the function and producers alike."""
    if len(data) > QUEUE_MESSAGE_BYTES:
        _malformed(f"{what} is {len(data)} bytes; the limit is {QUEUE_MESSAGE_BYTES}")


def _as_text(data: bytes, what: str) -> str:
    require_size(data, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        _malformed(f"{what} is not UTF-8 ({err.reason} at byte {err.start})")


def _malformed(message: str) -> NoReturn:
    raise MessageRejected(code=ErrorCode.MALFORMED_MESSAGE, message=message)


_SUGGESTIONS = 20
"""Closest-name hints for the first faults only: past that it is no typo, and difflib costs per name."""


def _field_error(
    loc: Iterable[int | str], kind: str, text: str, value: object, *, suggest: bool
) -> tuple[FieldError, bool]:
    """The fault, with long quoted values cut to an excerpt, and whether its reason quotes a value."""
    path = [str(p) for p in loc]
    name = ".".join(path_part(p) for p in path) or "message"
    if kind == "extra_forbidden":
        known = KNOWN_UPDATE_FIELDS if path[:1] == ["update"] and len(path) == 2 else KNOWN_MESSAGE_FIELDS
        text = f"unknown property {shown(path[-1])}" + (_suggestion(path[-1], known) if suggest else "")
    elif kind == "missing":
        text = "is required"
    text = text.removeprefix("Value error, ")
    quoted = kind == "extra_forbidden" and len(path[-1]) > LONG_VALUE_CHARS  # a long name: once in the summary
    for piece in _pieces(value):
        text, found = _excerpted(text, piece)
        quoted = quoted or found
    return FieldError(field=name, message=text), quoted


def _excerpted(text: str, piece: str) -> tuple[str, bool]:
    """`text` with a quote of `piece` (whole, or a prefix of it cut by the reason) as `shown(piece)`.

    Returns whether `text` quotes it at all. Short values stay as they are; so does text quoting none.
    """
    quoted = repr(piece)
    start = text.find(quoted[: EXCERPT_CHARS + 1])  # the opening quote and the first characters
    if start < 0:
        return text, False
    if len(piece) <= LONG_VALUE_CHARS:
        return text, True
    end = start + 1
    for char in quoted[1:-1]:  # as far as the reason quotes it, then its closing quote
        if end >= len(text) or text[end] != char:
            break
        end += 1
    if end < len(text) and text[end] == quoted[-1]:
        text = text[:start] + shown(piece) + text[end + 1 :]
    return text, True


def _pieces(value: object) -> set[str]:
    """The strings a reason may quote from a bad value: it, its flags members, an object's string values."""
    if isinstance(value, str):
        return {value, *value.split(",")} - {""}
    if isinstance(value, dict):
        return {v for v in value.values() if isinstance(v, str) and v}
    return set()


def _suggestion(name: str, known: Iterable[str]) -> str:
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""
