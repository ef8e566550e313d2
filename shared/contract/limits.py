"""Limits of Azure Queue Storage that the contract is shaped by (docs/contract.md sections 1 and 4).

One place, because the function, the producer library and the CLI must agree on them: a message the
producer accepts is one the queue stores and the function reads, and every outcome fits the result queue.
"""

from __future__ import annotations

import re
from typing import Final

QUEUE_MESSAGE_BYTES: Final = 64 * 1024
"""Queue Storage's limit on one message as stored (after base64, when used); also the input JSON's limit."""


def outcome_budget(message_encoding: str) -> int:
    """The most UTF-8 bytes an outcome's JSON text may take to fit one message once stored.

    With host.json's `messageEncoding: none` the text is stored as is (65,536 bytes, which Azurite
    checks as Azure does); with `base64` it grows by 4/3, leaving 49,152.
    """
    return QUEUE_MESSAGE_BYTES if message_encoding == "none" else QUEUE_MESSAGE_BYTES // 4 * 3


DEFAULT_INPUT_QUEUE: Final = "certificate-state-updates"
DEFAULT_RESULT_QUEUE: Final = "certificate-state-results"

QUEUE_NAME_MAX: Final = 63
POISON_SUFFIX: Final = "-poison"
TRIGGER_QUEUE_NAME_MAX: Final = QUEUE_NAME_MAX - len(POISON_SUFFIX)
"""56: the host names the poison queue `<name>-poison`, which must itself be a valid queue name."""

_QUEUE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]*[a-z0-9]")


def queue_name_problem(name: str, max_length: int = QUEUE_NAME_MAX) -> str | None:
    """Why `name` is not a Storage queue name of at most `max_length` characters, or None if it is."""
    if 3 <= len(name) <= max_length and _QUEUE_NAME.fullmatch(name) and "--" not in name:
        return None
    why = f" ({max_length}, so that <name>{POISON_SUFFIX} is valid)" if max_length < QUEUE_NAME_MAX else ""
    return (
        f"{name!r} is not a queue name: 3-{max_length}{why} lowercase letters, digits and single hyphens, "
        "starting and ending with a letter or digit"
    )
