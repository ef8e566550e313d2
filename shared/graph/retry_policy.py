"""What to do after each Graph answer (docs/contract.md section 5), as a pure function.

Kept free of I/O and clocks so the whole policy is one table in the tests.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

from shared.contract.errors import ErrorCode

BACKOFF_BASE_SECONDS: Final = 1.0
BACKOFF_CAP_SECONDS: Final = 30.0
RETRY_AFTER_MAX_SECONDS: Final = 120.0
"""No Retry-After holds the process's writes longer than this (docs/design.md, "The Graph answer in time and size")."""
_SECONDS = re.compile(r"[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*")  # fullmatch: `$` would accept a final newline


class Action(StrEnum):
    """The four things a client can do with an answer."""

    DONE = "done"
    REFRESH_TOKEN = "refreshToken"  # noqa: S105 - an action name, not a secret
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    """The policy's verdict; `gate` means the delay holds back every request of the process.

    `capped_from` is the Retry-After value when it asked for longer than the ceiling (`delay` is the ceiling).
    """

    action: Action
    code: ErrorCode | None = None
    delay: float = 0.0
    gate: bool = False
    capped_from: str | None = None


_PERMANENT: Final = {
    400: ErrorCode.GRAPH_BAD_REQUEST,
    401: ErrorCode.GRAPH_UNAUTHORIZED,
    403: ErrorCode.GRAPH_FORBIDDEN,
    404: ErrorCode.GRAPH_NOT_FOUND,
    409: ErrorCode.GRAPH_CONFLICT,
}
SUCCESS_STATUSES: Final = frozenset({200, 204})
"""What Graph documents for this PATCH: 200 with the object, 204 with `Prefer: return=minimal`.

Any other 2xx (202 Accepted above all) says the update may or may not be applied: `graphRequestFailed`.
"""
_THROTTLING: Final = frozenset({429, 503, 509})
_TRANSIENT: Final = frozenset({408, 500, 502, 504})


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After in any form Graph uses, or None if absent or unreadable.

    Whole seconds (`10`), fractional seconds (`2.128`), the `30,120` list form (first value)
    and an HTTP date are all read; a date in the past means "now".
    """
    if value is None:
        return None
    if match := _SECONDS.fullmatch(value.split(",", 1)[0]):
        return float(match[1])
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, float((when - now).total_seconds()))


def retry_after_ceiling(max_wait_seconds: float) -> float:
    """The longest Retry-After honoured: one invocation's wait budget, within [30 s, 120 s].

    A longer hold cannot help the message that met the 429 (it is deferred: no invocation waits longer) and
    starves every other message of the process; being early costs one more 429, which sets the gate again.
    """
    return min(RETRY_AFTER_MAX_SECONDS, max(BACKOFF_CAP_SECONDS, max_wait_seconds))


def backoff(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: never zero, never in lockstep with other workers."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def decide(
    status: int | None,
    retry_after: str | None,
    *,
    attempt: int,
    token_refreshed: bool,
    now: datetime,
    rng: random.Random,
    retry_after_cap: float = RETRY_AFTER_MAX_SECONDS,
) -> Decision:
    """Classify one answer; `status=None` stands for a timeout or a dropped connection."""
    if status in SUCCESS_STATUSES:
        return Decision(Action.DONE)
    if status == 401 and not token_refreshed:
        return Decision(Action.REFRESH_TOKEN, ErrorCode.GRAPH_UNAUTHORIZED)
    if status in _THROTTLING:
        asked = parse_retry_after(retry_after, now)
        code = ErrorCode.GRAPH_THROTTLED if status != 503 else ErrorCode.GRAPH_UNAVAILABLE
        if asked is not None and asked > retry_after_cap:
            return Decision(Action.RETRY, code, retry_after_cap, gate=True, capped_from=retry_after)
        return Decision(Action.RETRY, code, backoff(attempt, rng) if asked is None else asked, gate=True)
    if status is None or status in _TRANSIENT or (status >= 500 and status not in (501, 505)):
        return Decision(Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, backoff(attempt, rng))
    return Decision(Action.FAIL, _PERMANENT.get(status, ErrorCode.GRAPH_REQUEST_FAILED))
