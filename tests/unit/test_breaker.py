"""The breaker's permits and deferrals: only its probe writes once it is open, and copies come back in time."""

from __future__ import annotations

import random

import pytest

from shared.contract.errors import DeferralRequested, ErrorCode
from shared.graph.breaker import CLOSED, CircuitBreaker, Permit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock, *, cooldown: float = 10, max_cooldown: float = 80) -> CircuitBreaker:
    """A breaker that has just opened (threshold 1)."""
    breaker = CircuitBreaker(threshold=1, cooldown_seconds=cooldown, max_cooldown_seconds=max_cooldown,
                             probe_timeout_seconds=5, clock=clock, rng=random.Random(3))  # fmt: skip
    breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)
    return breaker


def probing(clock: Clock) -> tuple[CircuitBreaker, Permit]:
    """A breaker whose cool-down just ended, and the permit of the caller that probes."""
    breaker = opened(clock)
    clock.now += 10
    return breaker, breaker.admit()


def deferral(breaker: CircuitBreaker, *args: object) -> float:
    with pytest.raises(DeferralRequested) as held:
        breaker.admit(*args)  # type: ignore[arg-type]
    return held.value.delay_seconds


def test_a_permit_taken_while_closed_does_not_pass_once_the_breaker_opened():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_seconds=10, max_cooldown_seconds=80, probe_timeout_seconds=5,
                             clock=clock)  # fmt: skip
    permit = breaker.admit()
    assert permit == CLOSED
    breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)  # another invocation's answer, while this one waited for its slot
    deferral(breaker, permit)


def test_the_probe_passes_again_with_its_permit_and_no_one_else_does():
    clock = Clock()
    breaker, probe = probing(clock)
    assert probe.probe is not None
    clock.now += 1  # the probe waited for its write slot
    assert breaker.admit(probe) == probe  # right before its send: it still goes out
    deferral(breaker)
    deferral(breaker, CLOSED)


def test_a_probe_released_without_a_verdict_lets_the_next_caller_probe_at_once():
    clock = Clock()
    breaker, probe = probing(clock)
    deferral(breaker)
    breaker.release(probe)  # deferred for its write slot, say: it sent nothing
    assert breaker.admit().probe == (probe.probe or 0) + 1
    breaker.release(probe)  # an old permit changes nothing
    deferral(breaker)


def test_a_permit_of_an_earlier_probe_does_not_pass():
    clock = Clock()
    breaker, first = probing(clock)
    breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)  # the probe failed: open for 20 s
    clock.now += 20
    second = breaker.admit()
    assert second != first
    deferral(breaker, first)


def test_while_a_probe_is_out_others_come_back_one_base_cooldown_later_however_long_the_cooldown_grew():
    clock = Clock()
    breaker = opened(clock, cooldown=10, max_cooldown=80)
    for cooldown in (10, 20, 40, 80):  # three failed probes double it to the cap
        clock.now += cooldown
        breaker.admit()
        if cooldown < 80:
            breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)
    delays = [deferral(breaker) for _ in range(50)]
    assert all(10 <= d <= 12 for d in delays)  # the probe's answer is in by then, not 80-96 s later


def test_while_open_a_copy_comes_back_when_the_probe_goes_out_with_a_jitter_bounded_by_the_base_cooldown():
    clock = Clock()
    breaker = opened(clock, cooldown=10, max_cooldown=80)
    clock.now += 10
    breaker.admit()
    breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)
    clock.now += 20
    breaker.admit()
    breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)  # open for 40 s now
    clock.now += 5
    delays = [deferral(breaker) for _ in range(50)]
    assert all(35 <= d <= 35 + 2 for d in delays)  # a fifth of the base, not of the 35 s left (up to 42 s)
    assert max(delays) - min(delays) > 1  # still spread, so the backlog does not return as one burst
