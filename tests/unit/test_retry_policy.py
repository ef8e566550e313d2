"""The retry policy as one table: status x headers -> decision (docs/contract.md section 5)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from shared.contract.errors import ErrorCode
from shared.graph.retry_policy import (
    BACKOFF_CAP_SECONDS,
    RETRY_AFTER_MAX_SECONDS,
    Action,
    backoff,
    decide,
    parse_retry_after,
    retry_after_ceiling,
)

NOW = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)
IN_7S = format_datetime(NOW + timedelta(seconds=7), usegmt=True)
PAST = format_datetime(NOW - timedelta(seconds=30), usegmt=True)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("10", 10.0),
        ("0", 0.0),
        ("2.128", 2.128),
        (" 3 ", 3.0),
        ("30,120", 30.0),
        (IN_7S, 7.0),
        (PAST, 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e3", None),
        ("10\n", None),  # a regex `$` would accept the newline
        ("٣", None),  # `\d` would accept other scripts' digits
    ],
)
def test_retry_after_in_every_form_graph_uses(header: str | None, seconds: float | None):
    assert parse_retry_after(header, NOW) == seconds


# (status, Retry-After, token already refreshed) -> (action, code, delay or None for backoff, gate)
TABLE = [
    (200, None, False, Action.DONE, None, 0.0, False),
    (204, None, False, Action.DONE, None, 0.0, False),
    (429, "10", False, Action.RETRY, ErrorCode.GRAPH_THROTTLED, 10.0, True),
    (429, "2.128", False, Action.RETRY, ErrorCode.GRAPH_THROTTLED, 2.128, True),
    (429, IN_7S, False, Action.RETRY, ErrorCode.GRAPH_THROTTLED, 7.0, True),
    (429, None, False, Action.RETRY, ErrorCode.GRAPH_THROTTLED, None, True),
    (503, "5", False, Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, 5.0, True),
    (503, None, False, Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, None, True),
    (509, "1", False, Action.RETRY, ErrorCode.GRAPH_THROTTLED, 1.0, True),
    (500, None, False, Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, None, False),
    (502, None, False, Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, None, False),
    (504, "9", False, Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, None, False),
    (408, None, False, Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, None, False),
    (None, None, False, Action.RETRY, ErrorCode.GRAPH_UNAVAILABLE, None, False),
    (401, None, False, Action.REFRESH_TOKEN, ErrorCode.GRAPH_UNAUTHORIZED, 0.0, False),
    (401, None, True, Action.FAIL, ErrorCode.GRAPH_UNAUTHORIZED, 0.0, False),
    (400, None, False, Action.FAIL, ErrorCode.GRAPH_BAD_REQUEST, 0.0, False),
    (403, None, False, Action.FAIL, ErrorCode.GRAPH_FORBIDDEN, 0.0, False),
    (404, None, False, Action.FAIL, ErrorCode.GRAPH_NOT_FOUND, 0.0, False),
    (409, None, False, Action.FAIL, ErrorCode.GRAPH_CONFLICT, 0.0, False),
    (405, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    (412, "5", False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    (501, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    # Graph documents 200 and 204 for this PATCH; 202 and the rest say nothing certain about the update.
    (201, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    (202, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    (206, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    # A redirect is an answer, never followed, and retrying would only meet it again.
    (301, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    (302, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    (307, "5", False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
    (308, None, False, Action.FAIL, ErrorCode.GRAPH_REQUEST_FAILED, 0.0, False),
]


@pytest.mark.parametrize(("status", "retry_after", "refreshed", "action", "code", "delay", "gate"), TABLE)
def test_decision_table(status, retry_after, refreshed, action, code, delay, gate):
    decision = decide(status, retry_after, attempt=2, token_refreshed=refreshed, now=NOW, rng=random.Random(7))
    assert (decision.action, decision.code, decision.gate) == (action, code, gate)
    if delay is None:  # exponential backoff for attempt 2: between 1 and 2 seconds
        assert 1.0 <= decision.delay <= 2.0
    else:
        assert decision.delay == pytest.approx(delay)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(BACKOFF_CAP_SECONDS, 2.0 ** (attempt - 1))
        delays = {backoff(attempt, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, so concurrent workers do not retry in lockstep


FAR = format_datetime(NOW + timedelta(days=3650), usegmt=True)


@pytest.mark.parametrize("header", ["3600", "99999999999999999999", "9" * 5000, "7200.5", FAR])
@pytest.mark.parametrize("status", [429, 503])
def test_a_retry_after_beyond_the_ceiling_is_capped_and_says_so(header: str, status: int):
    decision = decide(status, header, attempt=1, token_refreshed=False, now=NOW, rng=random.Random(1),
                      retry_after_cap=60.0)  # fmt: skip
    assert (decision.action, decision.delay, decision.gate, decision.capped_from) == (Action.RETRY, 60.0, True, header)


def test_a_retry_after_within_the_ceiling_is_honoured_as_given():
    decision = decide(429, "60", attempt=1, token_refreshed=False, now=NOW, rng=random.Random(1), retry_after_cap=60.0)
    assert (decision.delay, decision.capped_from) == (60.0, None)


@pytest.mark.parametrize(("max_wait", "ceiling"), [(0, 30.0), (10, 30.0), (60, 60.0), (90, 90.0), (540, 120.0)])
def test_the_ceiling_is_the_wait_budget_within_30_and_120_seconds(max_wait: float, ceiling: float):
    assert retry_after_ceiling(max_wait) == ceiling
    assert retry_after_ceiling(max_wait) <= RETRY_AFTER_MAX_SECONDS
