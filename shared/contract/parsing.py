"""From queue bytes to a validated `UpdateMessage`, or a `MessageRejected` that says why.

The app runs with `messageEncoding: none`, so the body is whatever the producer stored:
raw JSON text (azure-storage-queue's default, Logic Apps) or base64 of it (the Functions
default, older producers). Both are accepted; nothing is poisoned for its encoding.
"""

from __future__ import annotations

import binascii
import difflib
import json
import re
from base64 import b64decode
from collections.abc import Iterable
from typing import Any, NoReturn, cast

from pydantic import ValidationError

from shared.contract.errors import ErrorCode, FieldError, MessageRejected
from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.contract.messages import KNOWN_MESSAGE_FIELDS, KNOWN_UPDATE_FIELDS, UpdateMessage

_BASE64 = re.compile(rb"^[A-Za-z0-9+/]+={0,2}$")


def decode_body(body: bytes) -> dict[str, Any]:
    """Return the message's JSON object, whichever of the two encodings it came in."""
    text = _as_text(body, "message")
    stripped = text.strip()
    if not stripped:
        _malformed("message is empty")
    compact = stripped.encode("ascii", "ignore")
    if not stripped.startswith("{") and _BASE64.match(compact) and len(compact) % 4 == 0:
        try:
            stripped = _as_text(b64decode(compact, validate=True), "base64-decoded message").strip()
        except binascii.Error:
            _malformed("message is neither a JSON object nor base64 of one")
    try:
        document = json.loads(stripped, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except (json.JSONDecodeError, _NotJsonError, RecursionError) as err:
        _malformed(f"message is not valid JSON: {err}")
    if not isinstance(document, dict):
        _malformed(f"message must be a JSON object, not {type(document).__name__}")
    return cast("dict[str, Any]", document)


def parse_message(document: dict[str, Any]) -> UpdateMessage:
    """Validate a decoded message against the contract, naming every field at fault."""
    try:
        return UpdateMessage.from_wire(document)
    except ValidationError as err:
        details = [_field_error(e["loc"], e["type"], e["msg"]) for e in err.errors(include_url=False)]
        first = details[0]
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        raise MessageRejected(
            code=ErrorCode.VALIDATION_FAILED, message=f"{first.field}: {first.message}{more}", details=details
        ) from None


class _NotJsonError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key is ambiguous (which value did the producer mean?), so it is refused."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            msg = f"duplicate key {key!r}"
            raise _NotJsonError(msg)
        result[key] = value
    return result


def _no_constants(name: str) -> Any:  # noqa: ANN401 - json's hook signature
    msg = f"{name} is not JSON"
    raise _NotJsonError(msg)


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


def _field_error(loc: Iterable[int | str], kind: str, text: str) -> FieldError:
    path = [str(p) for p in loc]
    name = ".".join(path) or "message"
    if kind == "extra_forbidden":
        known = KNOWN_UPDATE_FIELDS if path[:1] == ["update"] and len(path) == 2 else KNOWN_MESSAGE_FIELDS
        text = f"unknown property {path[-1]!r}" + _suggestion(path[-1], known)
    elif kind == "missing":
        text = "is required"
    return FieldError(field=name, message=text.removeprefix("Value error, "))


def _suggestion(name: str, known: Iterable[str]) -> str:
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""
