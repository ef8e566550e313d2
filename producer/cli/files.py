"""Reading message files: one JSON object or JSON Lines, each entry checked as the function checks it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producer.cli.exits import InputError, UsageError
from shared.contract.errors import FieldError, MessageRejected
from shared.contract.parsing import decode_body, parse_message


@dataclass(frozen=True)
class Entry:
    """One message of an input file: where it starts, its JSON object, and what is wrong with it."""

    line: int
    document: dict[str, Any] | None
    problems: tuple[FieldError, ...] = ()

    def describe(self) -> Iterator[str]:
        """One line per problem: `line 3: update.certificateKeyLength: ...`."""
        for problem in self.problems:
            where = "" if problem.field == "message" else f"{problem.field}: "
            yield f"line {self.line}: {where}{problem.message}"


def read_source(path: str) -> bytes:
    """The bytes of FILE, or of stdin for `-`."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        msg = f"{path}: no such file"
    except IsADirectoryError:
        msg = f"{path}: is a directory"
    except OSError as err:
        msg = f"{path}: cannot read ({err.strerror or err})"
    raise UsageError(msg)


def parse_entries(data: bytes, tenant: str | None = None) -> list[Entry]:
    """One JSON object (pretty-printed or not), or JSON Lines (blank lines ignored), as entries.

    With `tenant`, every message gets that `tenantId` (one naming another tenant is a problem).

    A file is JSON Lines when it does not parse as one object and its first line is a whole
    object on its own line, so a broken pretty-printed object gets one error, not one per line.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        msg = f"not UTF-8 ({err.reason} at byte {err.start})"
        raise InputError(msg) from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        msg = "no messages: the file is empty"
        raise InputError(msg)
    whole = _entry(lines[0][0], text, tenant)
    first = lines[0][1].strip()
    one_object_per_line = first.startswith("{") and first.endswith("}")
    if len(lines) == 1 or whole.document is not None or not one_object_per_line:
        return [whole]
    return [_entry(number, line, tenant) for number, line in lines]


def _entry(line: int, text: str, tenant: str | None) -> Entry:
    try:
        document = decode_body(text.encode("utf-8"))
    except MessageRejected as err:
        return Entry(line, None, (FieldError("message", err.message),))
    if tenant is not None:
        given = document.get("tenantId")
        if given is not None and (not isinstance(given, str) or given.lower() != tenant):
            return Entry(line, document, (FieldError("tenantId", f"is {given!r}, but --tenant is {tenant}"),))
        document["tenantId"] = tenant
    try:
        parse_message(document)
    except MessageRejected as err:
        return Entry(line, document, tuple(err.details) or (FieldError("message", err.message),))
    return Entry(line, document)


def load(path: str, tenant: str | None = None) -> list[Entry]:
    """The entries of FILE (or stdin), in `tenant` if given; unreadable content is an `InputError` naming the file."""
    try:
        return parse_entries(read_source(path), tenant)
    except InputError as err:
        raise InputError(f"{label(path)}: {err}") from None


def label(path: str) -> str:
    """How a FILE argument is named in messages."""
    return "stdin" if path == "-" else path
