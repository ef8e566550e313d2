"""The process-wide write pacer: a budget per window and a Retry-After gate for everyone."""

from __future__ import annotations

import threading
import time

import pytest

from shared.graph.pacing import WritePacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_writes_are_spaced_so_no_window_holds_more_than_the_budget():
    t = FakeTime()
    pacer = WritePacer(25, 5.0, clock=t.clock, sleep=t.sleep)
    times = []
    for _ in range(100):
        assert pacer.acquire(deadline=t.now + 60)
        times.append(t.now)
    for start in times:
        in_window = [x for x in times if start <= x < start + 5.0]
        assert len(in_window) <= 25
    assert times[-1] - times[0] == pytest.approx(99 * 0.2)  # and no slower than the budget allows


def test_a_retry_after_holds_every_caller_until_it_expires():
    t = FakeTime()
    pacer = WritePacer(100, 1.0, clock=t.clock, sleep=t.sleep)
    assert pacer.acquire(deadline=t.now)
    pacer.hold(7.5)
    held_from = t.now
    assert pacer.acquire(deadline=t.now + 60)
    assert t.now - held_from >= 7.5
    assert pacer.acquire(deadline=t.now + 0.01)  # the gate is open again: only the spacing remains


def test_no_slot_before_the_deadline_reserves_nothing():
    t = FakeTime()
    pacer = WritePacer(1, 10.0, clock=t.clock, sleep=t.sleep)
    assert pacer.acquire(deadline=t.now)
    assert not pacer.acquire(deadline=t.now + 5)  # next slot is 10 s away
    assert t.sleeps == []
    t.now += 10
    assert pacer.acquire(deadline=t.now)


def test_a_hold_that_arrives_while_waiting_still_applies():
    t = FakeTime()
    pacer = WritePacer(1, 1.0, clock=t.clock, sleep=t.sleep)
    assert pacer.acquire(deadline=t.now)
    original_sleep = t.sleep

    def sleep_then_429(seconds: float) -> None:  # another thread receives a 429 meanwhile
        original_sleep(seconds)
        if len(t.sleeps) == 1:
            pacer.hold(30)

    pacer._sleep = sleep_then_429
    start = t.now
    assert pacer.acquire(deadline=t.now + 100)
    assert t.now - start >= 31


def test_concurrent_threads_share_one_budget():
    pacer = WritePacer(50, 0.5)  # real clock: one write per 10 ms for the whole process
    granted = []

    def worker() -> None:
        for _ in range(10):
            granted.append(pacer.acquire(deadline=time.monotonic() + 10))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert granted == [True] * 80
    assert time.monotonic() - started >= 79 * 0.01  # eight threads could not burst past the budget


def test_deferred_messages_are_booked_one_slot_apart_after_the_gate():
    t = FakeTime()
    pacer = WritePacer(10, 10.0, clock=t.clock, sleep=t.sleep)  # a slot per second
    assert pacer.acquire(deadline=t.now)
    assert [pacer.deferral().delay_seconds for _ in range(3)] == [1.0, 2.0, 3.0]
    pacer.hold(30)
    held = pacer.deferral()
    assert (held.delay_seconds, held.retry_after) == (30.0, True)
    t.now += 31  # bookings in the past are no one's: the next deferral starts from the free slot again
    assert pacer.deferral() == (0.0, False, None)


def test_a_deferral_is_booked_after_the_slots_callers_are_waiting_for():
    pacer = WritePacer(1, 0.6)  # real clock: one slot per 0.6 s
    assert pacer.acquire(deadline=time.monotonic() + 1)
    waiter = threading.Thread(target=pacer.acquire, args=(time.monotonic() + 5,))
    waiter.start()
    time.sleep(0.2)  # the waiter now waits for the next slot, about 0.4 s away
    booked = pacer.deferral().delay_seconds
    waiter.join()
    assert booked > 0.6  # not the waiter's slot but the one after it
