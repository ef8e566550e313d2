"""A tenant's write budget shared by several instances through one conditionally written row."""

from __future__ import annotations

import gc
import itertools
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.graph import budget
from shared.graph.budget import (
    ALONE_REACH_SECONDS,
    FALLBACK_SECONDS,
    HORIZON_SECONDS,
    BudgetRow,
    Contended,
    Lookout,
    SharedPacer,
)
from shared.graph.pacing import NextSlot, WritePacer
from shared.settings import Settings
from tests.support.budget import MemoryStore

WINDOW, BUDGET = 10.0, 49


class Clock:
    """One clock for every instance (wall and monotonic move together); sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def wall(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def one(clock: Clock, store: MemoryStore, *, split: float, instances: int, window: float = WINDOW,
        instance: str = "i0", lookout: Lookout | None = None, budget: int = BUDGET,
        tenant: str = "tenant", sleep: Callable[[float], None] | None = None) -> SharedPacer:  # fmt: skip
    """One instance's pacer for the tenant, of a deployment of `instances`, with its own lookout unless given."""
    return SharedPacer(tenant, store, budget, window, instance=instance, fallback_budget=split, instances=instances,
                       wall=clock.wall, mono=clock.wall, sleep=sleep or clock.sleep,
                       lookout=lookout or Lookout(store, clock.wall))  # fmt: skip


def pacers(n: int, clock: Clock, store: MemoryStore, *, budget: int = BUDGET, tenant: str = "tenant",
           lookouts: list[Lookout] | None = None) -> list[SharedPacer]:  # fmt: skip
    """One pacer per instance; each instance (process) has its own board of gates, as each has its own memory."""
    lookouts = lookouts or [Lookout(store, clock.wall) for _ in range(n)]
    split = max(1, (budget + 1) // n - 1)
    return [one(clock, store, split=split, instances=n, instance=f"i{i}", lookout=lookouts[i], budget=budget,
                tenant=tenant) for i in range(n)]  # fmt: skip


def max_in_window(times: list[float], window: float = WINDOW) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


@pytest.mark.parametrize("instances", [1, 2, 4, 8])
def test_instances_together_write_the_whole_budget_and_never_more(instances: int):
    clock = Clock()
    store = MemoryStore(clock)
    group = pacers(instances, clock, store)
    sent: list[float] = []
    for pacer in itertools.islice(itertools.cycle(group), 400):  # every instance has demand all the time
        assert pacer.acquire(deadline=clock.now + 60)
        sent.append(clock.now)
    assert max_in_window(sent) <= BUDGET + 1  # slots spaced window/budget: a closed window may touch one more
    rate = (len(sent) - 1) / (sent[-1] - sent[0])
    assert rate == pytest.approx(BUDGET / WINDOW, rel=0.02)  # the full budget, not N x floor(budget / N)


def test_an_uncontended_claim_is_one_conditional_write_for_a_block_of_slots():
    clock = Clock()
    store = MemoryStore(clock)
    (alone,) = pacers(1, clock, store)
    for _ in range(100):
        assert alone.acquire(deadline=clock.now + 60)
    assert store.calls.count("read") == 1  # the first look only: the ETag of its own write is kept
    per_block = int(ALONE_REACH_SECONDS / (WINDOW / BUDGET))  # two seconds of slots while nobody else writes
    assert store.calls.count("write") == math.ceil(100 / per_block)


@pytest.mark.parametrize("instances", [1, 2])
def test_slots_further_apart_than_a_claim_reaches_are_claimed_one_at_a_time(instances: int):
    clock = Clock()
    store = MemoryStore(clock)
    group = [SharedPacer("tenant", store, 49, 200.0, instance=f"i{i}", fallback_budget=11, wall=clock.wall,
                         mono=clock.wall, sleep=clock.sleep, lookout=Lookout(store, clock.wall))
             for i in range(instances)]  # fmt: skip
    for pacer in itertools.islice(itertools.cycle(group), 6):  # a slot every 4 s: past either reach
        assert pacer.acquire(deadline=clock.now + 60)
    assert store.calls.count("write") <= 6 * 2  # a claim (and at most one lost race) per slot, never an empty one


def test_a_retry_after_one_instance_learns_holds_the_others_within_the_horizon():
    clock = Clock()
    store = MemoryStore(clock)
    a, b = pacers(2, clock, store)
    for pacer in (a, b, a, b):
        assert pacer.acquire(deadline=clock.now + 60)
    told = clock.now
    a.hold(5.0)  # a 429 with Retry-After: 5 reached instance a
    assert b.acquire(deadline=clock.now + 60)
    assert clock.now >= told + 5.0 - 1e-9  # b looked at the row before its slot, and waited out the gate


def test_a_slot_used_late_waits_for_a_look_within_the_horizon_of_its_use():
    clock = Clock()
    store = MemoryStore(clock)
    stalled: list[float] = []

    def starved(seconds: float) -> None:  # after its look before the slot, b's process gets no CPU for 2 s
        slot = store.rows["tenant"].next_slot - b.interval  # b's, the last claimed
        if b.counts["claims"] and not stalled and clock.now >= slot - HORIZON_SECONDS / 2:
            stalled.append(clock.now)
            clock.now += 2.0
            a.hold(30.0)  # meanwhile a 429 with Retry-After: 30 reached instance a
        clock.sleep(seconds)

    a, b = (one(clock, store, window=400.0, split=1, instances=2, instance=name, sleep=sleep)
            for name, sleep in (("i0", None), ("i1", starved)))  # fmt: skip
    assert a.acquire(deadline=clock.now + 60)
    assert b.acquire(deadline=clock.now + 60)  # a slot every 8 s: b's lies ahead, and may be used 7 s late
    assert stalled
    assert clock.now >= stalled[0] + 2.0 + 30.0 - 1e-6  # b looked again before using its slot late, and held


def test_copies_deferred_anywhere_return_one_slot_apart_and_any_instance_writes_them():
    clock = Clock()
    store = MemoryStore(clock)
    a, b = pacers(2, clock, store)
    assert a.acquire(deadline=clock.now + 60)  # a's claim puts it on the row
    turns = [a.deferral(), a.deferral()]
    turns += [b.deferral(), b.deferral()]  # b books after a's turns, from the row
    assert a.counts["turnWrites"] == b.counts["turnWrites"] == 2  # each turn taken on the row
    slots = [turn.slot or 0.0 for turn in turns]
    assert all(turn.slot is not None for turn in turns)
    assert turns[0].delay_seconds >= 2.0
    assert all(y - x >= a.interval - 1e-6 for x, y in itertools.pairwise(slots))  # one timeline, never together
    assert round(slots[1] - slots[0], 6) == round(slots[3] - slots[2], 6) == round(a.interval, 6)
    sent = []
    for slot, pacer in zip(slots, (b, a, b, a), strict=True):  # each copy is picked up by the other instance
        clock.now = max(clock.now, slot - 0.4)  # back about half a second early
        assert pacer.use_booked(slot, deadline=clock.now + 2.0)
        sent.append(clock.now)
        assert clock.now >= slot - a.late_seconds  # not before its turn
    assert all(y - x >= a.interval - 1e-6 for x, y in itertools.pairwise(sent))
    late = a.deferral()
    assert late.slot is not None
    clock.now = late.slot + 5  # a copy picked up late still writes: its turn held no slot that went empty
    assert b.use_booked(late.slot, deadline=clock.now + 2.0)
    assert clock.now - (late.slot + 5) < a.interval


@pytest.mark.parametrize("late", [0.4, 0.8])  # 3.3 and 6.5 s: within the lateness a slot every 8 s allows
@pytest.mark.parametrize("instances", [1, 4])
def test_a_copy_back_late_writes_in_its_own_slot_and_the_tenant_s_next_slot_stays_where_it_was(
    instances: int, late: float
):
    clock = Clock()
    store = MemoryStore(clock)
    pacer = one(clock, store, window=400.0, split=1, instances=instances)  # a slot every 8.16 s, one per claim
    assert pacer.acquire(deadline=clock.now + 60)
    first = clock.now
    turn = pacer.deferral().slot
    assert turn is not None
    assert pacer.deferral().slot == pytest.approx(turn + pacer.interval, abs=1e-6)  # the next copy's turn
    clock.now = turn + late * pacer.interval  # the copy read seconds late (behind a backlog)
    assert pacer.use_booked(turn, deadline=clock.now + 2)
    assert clock.now == turn + late * pacer.interval  # written at once
    clock.now = turn + pacer.interval  # the next copy on time: its slot is free, not one moved by the lateness
    assert pacer.use_booked(turn + pacer.interval, deadline=clock.now + 2)
    assert clock.now - (turn + pacer.interval) < 0.01
    assert (clock.now - first) / pacer.interval == pytest.approx(round((clock.now - first) / pacer.interval))
    clock.now += 3 * pacer.interval  # idle for three slots, then a copy well past any of them: a new slot now
    now = clock.now
    assert pacer.use_booked(now - 1.0, deadline=now + 60)
    assert clock.now - now < 0.01


def test_a_slot_gone_by_is_claimed_only_while_the_claim_s_round_trip_leaves_it_usable():
    for idle in (1.2 + 0.01 * step for step in range(200)):  # idle for any fraction of a slot past a whole number
        clock = Clock()
        store = MemoryStore(clock, latency=0.03)  # every store call takes 30 ms
        (pacer,) = pacers(1, clock, store, budget=9)  # a slot every 1.11 s, one a claim; half of it usable late
        sent = []
        for _ in range(3):
            assert pacer.acquire(deadline=clock.now + 60)
            sent.append(clock.now)
            clock.now += idle
        assert pacer.counts["slotsLost"] == 0, idle  # never claimed so late it was gone before it was taken
        assert all(b - a >= pacer.interval - 1e-6 for a, b in itertools.pairwise(sent))


def test_the_only_instance_a_deployment_may_have_books_turns_without_a_store_call():
    clock = Clock()
    store = MemoryStore(clock)
    (alone,) = pacers(1, clock, store)
    assert alone.acquire(deadline=clock.now + 60)
    calls = len(store.calls)
    turns = [alone.deferral().slot, alone.deferral().slot]
    assert store.calls[calls:] == []  # kept here: no other instance books on the row
    while alone.counts["claims"] < 2:
        assert alone.acquire(deadline=clock.now + 60)
    assert store.rows["tenant"].return_at > max(turn or 0.0 for turn in turns)  # the next claim carried them


def test_instances_deferring_for_one_tenant_at_once_never_book_the_same_turn():
    clock = Clock()
    store = MemoryStore(clock)
    a, b = pacers(2, clock, store)
    assert a.acquire(deadline=clock.now + 60)
    assert b.acquire(deadline=clock.now + 60)  # both write to the tenant: neither is alone
    turns = [pacer.deferral().slot for pacer in (a, b, a, b, b, a)]  # no claim between them publishes a turn
    slots = sorted(turn for turn in turns if turn is not None)
    assert len(slots) == 6
    # One copy per turn: two at one turn would leave one waiting a whole interval for the next slot.
    assert all(y - x >= a.interval - 1e-6 for x, y in itertools.pairwise(slots))


class Held(MemoryStore):
    """A store whose first write (or look) waits until the test lets it go (a booking on its way to the row)."""

    def __init__(self, clock: Clock | None = None, *, holds: str = "write") -> None:
        super().__init__(clock)
        self.holds = holds
        self.holding = threading.Event()
        self.go = threading.Event()

    def write(self, key: str, row: BudgetRow, etag: str | None) -> str:
        self._hold("write")
        return super().write(key, row, etag)

    def read_active(self, now: float) -> dict[str, BudgetRow]:
        self._hold("look")
        return super().read_active(now)

    def _hold(self, kind: str) -> None:
        if kind == self.holds and not self.holding.is_set():
            self.holding.set()
            assert self.go.wait(10)


def defer_six_at_once(pacer: SharedPacer, store: Held) -> list[NextSlot]:
    """One copy deferred, then five more while its turn is on the way to the row (a batch of the tenant's messages)."""
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(pacer.deferral)
        assert store.holding.wait(10)
        rest = [pool.submit(pacer.deferral) for _ in range(5)]
        asked = time.monotonic() + 5  # until each has asked (nothing public says so before its turn comes)
        while len(getattr(pacer, "_asks", ())) < 5 and time.monotonic() < asked:
            time.sleep(0.001)
        store.go.set()
        return [first.result(10)] + [future.result(10) for future in rest]


def test_copies_deferred_while_a_booking_is_on_its_way_share_the_next_write_and_still_get_a_turn_each():
    clock = Clock()
    store = Held(clock)
    a, b = pacers(2, clock, store)
    turns = defer_six_at_once(a, store)
    assert a.counts["turnWrites"] == 2  # the first alone, the five asked meanwhile in one write
    assert a.counts["bookings"] == 6
    slots = sorted(turn.slot or 0.0 for turn in turns)
    assert all(turn.slot is not None for turn in turns)
    assert [round(y - x, 6) for x, y in itertools.pairwise(slots)] == [round(a.interval, 6)] * 5  # one turn each
    later = b.deferral().slot  # another instance books after all of them, from the row
    assert later is not None
    assert later >= slots[-1] + a.interval - 1e-6


def test_a_booking_that_fails_leaves_the_copies_it_took_to_be_booked_by_their_own_calls():
    clock = Clock()
    store = Held(clock)
    a, _ = pacers(2, clock, store)
    refused = {"write": 2}  # the second write, the booking of the five asked while the first was on its way

    def write(key: str, row: BudgetRow, etag: str | None) -> str:
        refused["write"] -= 1
        if refused["write"] == 0:
            raise ConnectionError("refused once")
        return Held.write(store, key, row, etag)

    store.write = write  # type: ignore[method-assign]
    turns = defer_six_at_once(a, store)
    assert a.counts["storeFailures"] == 1
    assert a.counts["turnWrites"] == 2  # the first alone; the asks the failed write had taken, together in one more
    booked = a.counts["bookings"]  # on the row: all six, or five when the failed call's own caller went to the split
    assert booked in (5, 6)
    first = min(turn.slot or math.inf for turn in turns)
    # Consecutive turns, one each.
    assert store.rows["tenant"].return_at == pytest.approx(first + booked * a.interval, abs=1e-6)
    assert sum(turn.slot is not None for turn in turns) >= booked  # each booked copy was given its turn


def shared_in_real_time(first_slot: float, budget: int = 20) -> tuple[SharedPacer, Held]:
    """A pacer on the real clock for a tenant another instance writes to, its next slot at `first_slot` (wall).

    By default a slot every 0.5 s (20 per 10 s, two a shared claim); its first look held, as a deferral's booking
    on its way.
    """
    store = Held(holds="look")
    now = time.time()
    store.rows["tenant"] = BudgetRow(next_slot=first_slot, last_by="other", shared_until=now + 60, claimed_at=now,
                                     etag="other")  # fmt: skip
    pacer = SharedPacer("tenant", store, budget, 10.0, instance="here", fallback_budget=budget / 2 - 1, instances=2,
                        lookout=Lookout(store, time.time))  # fmt: skip
    return pacer, store


def wait_together(pacer: SharedPacer, store: Held, due: list[float]) -> tuple[NextSlot, list[tuple[bool, float]]]:
    """Callers due at `due` (wall) arrive while a deferral's booking is on its way, then wait for slots together.

    The booked turn, and whether each caller got a slot, and when (wall).
    """

    def caller(until: float) -> tuple[bool, float]:
        got = pacer.acquire(time.monotonic() + (until - time.time()))
        return got, time.time()

    with ThreadPoolExecutor(len(due) + 1) as pool:
        booking = pool.submit(pacer.deferral)
        assert store.holding.wait(10)
        callers = [pool.submit(caller, until) for until in due]
        arrived = time.monotonic() + 5  # until each waits (nothing public says so before its slot comes)
        while len(pacer._untils) < len(due) and time.monotonic() < arrived:
            time.sleep(0.001)
        store.go.set()
        return booking.result(10), [future.result(10) for future in callers]


def test_a_shared_claim_takes_only_the_slots_its_callers_can_take_before_they_give_up():
    first = time.time() + 0.4
    pacer, store = shared_in_real_time(first)
    # Two callers both due between the first slot and the second: one slot is all they can use.
    _, got = wait_together(pacer, store, [first + 0.1, first + 0.1])
    assert sorted(ok for ok, _ in got) == [False, True]
    # The second slot is left on the schedule for an instance that can use it, not claimed and lost here.
    assert store.rows["tenant"].next_slot == pytest.approx(first + pacer.interval, abs=1e-3)
    assert pacer.counts["claims"] == 1


def test_of_callers_waiting_together_the_one_due_soonest_takes_the_first_slot():
    for _ in range(4):  # which caller's thread comes first is up to the scheduler: every time, none goes without
        first = time.time() + 0.4
        pacer, store = shared_in_real_time(first)
        # One caller may wait long (a copy back at its turn), one is due before the second slot (a message
        # to be deferred): both can be served only if the first slot goes to the one due sooner.
        _, ((long, long_at), (short, short_at)) = wait_together(pacer, store, [first + 30, first + 0.25])
        assert (long, short) == (True, True)
        assert short_at < long_at
        assert pacer.counts["slots"] == 2


def test_a_copy_s_turn_is_booked_past_only_the_slots_the_callers_waiting_can_take():
    first = time.time() + 3.0  # the next slot: past the lead a turn keeps, and past the caller's wait
    pacer, store = shared_in_real_time(first)
    turn, ((got, _),) = wait_together(pacer, store, [time.time() + 1.0])  # a message waiting a second, for no slot
    assert not got
    # The copy's turn is that next slot, not the one after it with the next slot left empty; the row's next follows.
    assert turn.slot == pytest.approx(first, abs=1e-3)
    assert store.rows["tenant"].return_at == pytest.approx(first + pacer.interval, abs=1e-3)


def test_a_caller_gone_to_the_split_is_not_waited_for_once_the_table_is_back(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(budget, "FALLBACK_SECONDS", 0.3)
    started = time.time()
    first = started + 1.5
    pacer, store = shared_in_real_time(first, budget=10)  # a slot a second, usable up to half a second late
    store.go.set()
    store.failing = True
    with ThreadPoolExecutor(1) as pool:
        # Due at 2.3 s, it meets the outage and waits for the split's first slot, two seconds out.
        parked = pool.submit(pacer.acquire, time.monotonic() + 2.3)
        fell_back = time.monotonic() + 5
        while not pacer.counts["fallbacks"] and time.monotonic() < fell_back:
            time.sleep(0.001)
        store.failing = False
        time.sleep(max(0.0, started + 0.5 - time.time()))  # the table back and the fallback period over
        assert pacer.acquire(time.monotonic() + 3)  # the schedule's slot at 1.5 s, which the parked caller never takes
        took = time.time()
        assert parked.result(10)  # on the split
    assert took - first < 0.1  # not held back for a caller due sooner that is on the split


def test_the_table_down_falls_back_to_the_split_and_comes_back():
    clock = Clock()
    store = MemoryStore(clock)
    group = pacers(4, clock, store)
    store.failing = True
    sent = []
    for pacer in itertools.islice(itertools.cycle(group), 60):
        assert pacer.acquire(deadline=clock.now + 60)
        sent.append(clock.now)
    assert all(p.counts["fallbacks"] >= 1 for p in group)
    assert max_in_window(sent) <= BUDGET + 1  # four instances at floor(50 / 4) - 1 = 11 each cannot pass it
    store.failing = False
    clock.now += FALLBACK_SECONDS
    group[0].acquire(deadline=clock.now + 60)
    assert store.rows  # the schedule is in use again


def test_copies_deferred_on_the_split_come_back_when_the_store_is_tried_again_not_at_the_split_s_pace():
    clock = Clock()
    store = MemoryStore(clock)
    pacer = one(clock, store, window=400.0, split=5.25, instances=8)
    assert pacer.acquire(deadline=clock.now + 60)
    store.failing = True  # this process's store calls fail: on the split (a slot every 76 s) for 10 s
    pacer.deferral()
    pacer.deferral()  # the second failed store call in a row: the split
    assert pacer.counts["fallbacks"] == 1
    turns = [pacer.deferral() for _ in range(3)]
    assert all(turn.slot is not None for turn in turns)
    assert turns[0].delay_seconds <= FALLBACK_SECONDS + pacer.interval  # back when the store is tried again
    gaps = [b.delay_seconds - a.delay_seconds for a, b in itertools.pairwise(turns)]
    assert gaps == pytest.approx([pacer.interval] * 2)  # one slot of the budget apart, not of the split
    store.failing = False
    clock.now = (turns[0].slot or 0.0) - 0.4
    assert pacer.use_booked(turns[0].slot or 0.0, deadline=clock.now + 2)  # the schedule again


def test_a_split_turn_passed_over_for_the_store_s_retry_is_still_the_next_copy_s():
    clock = Clock()
    store = MemoryStore(clock)
    pacer = one(clock, store, split=0.25, instances=8)
    store.failing = True  # on the split, a slot every 40 s, for as long as the store fails
    assert pacer.acquire(deadline=clock.now + 60)
    split_from = clock.now
    clock.now += FALLBACK_SECONDS - 1
    assert (pacer.deferral().slot or 0.0) < split_from + 40  # the store tried again sooner than the split's slot
    clock.now = split_from + 39.5
    turn = pacer.deferral()  # the second failure in a row: the split again, its slot at 40 s sooner than another try
    # That slot, held back only as the split takes over again (not one a split interval further out, at 80 s,
    # nor the store's next try 10 s out).
    assert turn.delay_seconds <= budget.ALONE_REACH_SECONDS + 1e-6


def test_after_a_short_outage_the_room_held_for_the_others_splits_is_what_they_can_have_written_in_it():
    clock = Clock()
    store = MemoryStore(clock)
    window, split, instances = 400.0, 5.25, 8  # the benchmark's eight instances: the split a write every 76 s
    a = one(clock, store, window=window, split=split, instances=instances, instance="a")
    assert a.acquire(deadline=clock.now + 60)
    answered = clock.now  # the table's last answer before the outage
    clock.now += 1.0
    store.failing = True
    a.deferral()
    a.deferral()  # two failed calls: the split, for 10 s
    store.failing = False
    clock.now += FALLBACK_SECONDS
    back = clock.now
    sent = []
    while clock.now < back + window:
        assert a.acquire(deadline=clock.now + 600)
        sent.append(clock.now)
    # Held to `budget - 7 x (floor(split) + 1)` = 7 slots a window, seven would go out in the window after
    # it; the others can have been on their split only since the table last answered: one write each.
    assert len(sent) >= 40
    splits = [answered + 0.001] * (instances - 1)  # in step, as early as they can be: in the most windows
    assert max_in_window(sent + splits, window) <= BUDGET + 1


class Busy(MemoryStore):
    """A row other instances keep changing while `busy`: every conditional write of this one loses (412)."""

    busy = True

    def write(self, key: str, row: BudgetRow, etag: str | None) -> str:
        if self.busy:
            self._call("write")
            raise Contended("412")
        return super().write(key, row, etag)


def test_a_second_outage_within_the_first_one_s_lean_period_keeps_the_room_from_the_first():
    clock = Clock()
    store = MemoryStore(clock)
    here = Lookout(store, clock.wall)
    a = one(clock, store, window=400.0, split=5.25, instances=8, instance="a", lookout=here)
    assert a.acquire(deadline=clock.now + 60)
    first = clock.now  # the table's last answer before the first outage
    for _ in range(2):  # two outages, the table back for a few seconds between them, no claim meanwhile
        clock.now += 1.0
        store.failing = True
        a.deferral()
        a.deferral()
        store.failing = False
        clock.now += FALLBACK_SECONDS
        a.deferral()  # the table answers: back
    assert here.up_until == first  # the others' splits may date from the first outage: room from then on


def test_races_lost_to_other_instances_are_no_outage_no_split_and_no_lean_period():
    clock = Clock()
    store = Busy(clock)
    a = one(clock, store, split=11.5, instances=4, instance="a")
    turn = a.deferral()  # its turn lost on the row: kept here instead, not sent back at once without one
    assert turn.slot is not None
    assert turn.delay_seconds >= budget.DEFERRAL_LEAD_SECONDS
    assert not a.acquire(deadline=clock.now + 1)  # every claim lost: no slot within the second
    assert a.counts["racesLost"] >= 2
    assert (a.counts["storeFailures"], a.counts["fallbacks"]) == (0, 0)  # the table answered every time
    store.busy = False  # the others stop writing: the next claim wins
    assert a.acquire(deadline=clock.now + 60)
    assert store.rows["tenant"].lean_until < clock.now  # no room held for splits nobody went to


class Blip(MemoryStore):
    """A table that refuses one call, then answers again: a connection dropped as it was used."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.blips = 0

    def _call(self, kind: str) -> None:
        if self.blips:
            self.blips -= 1
            raise ConnectionError("connection reset")
        super()._call(kind)


def test_two_failures_of_the_deferral_records_are_an_outage_whatever_a_pacer_met_before():
    clock = Clock()
    lookout = Lookout(MemoryStore(clock), clock.wall)
    lookout.failed(clock.now)  # one refused pacer call: no outage yet
    lookout.failed_elsewhere("TimeoutError")
    assert lookout.outages == 0  # one failure of the records alone is not one either
    clock.now += FALLBACK_SECONDS - 1
    lookout.failed_elsewhere("ConnectionResetError")
    assert lookout.outages == 1
    clock.now += FALLBACK_SECONDS
    lookout.failed_elsewhere("TimeoutError")  # the last one too long ago: a new blip, not an outage
    assert lookout.outages == 1


def test_one_refused_call_is_no_outage_no_split_and_no_lean_period():
    clock = Clock()
    store = Blip(clock)
    a = one(clock, store, split=11.5, instances=4, instance="a")
    assert a.acquire(deadline=clock.now + 60)
    store.blips = 1
    sent = []
    while a.counts["claims"] < 3:  # the refused claim, and the claim after it
        assert a.acquire(deadline=clock.now + 60)
        sent.append(clock.now)
    assert store.rows["tenant"].lean_until < clock.now  # nobody went to a split: no room held for one
    while len(sent) < 3 * BUDGET:
        assert a.acquire(deadline=clock.now + 60)
        sent.append(clock.now)
    assert (a.counts["storeFailures"], a.counts["fallbacks"]) == (1, 0)
    assert (len(sent) - 1) / (sent[-1] - sent[0]) == pytest.approx(BUDGET / WINDOW, rel=0.03)


def test_the_table_lost_for_one_tenant_takes_every_tenant_of_the_process_to_the_split():
    clock = Clock()
    store = MemoryStore(clock)
    here = Lookout(store, clock.wall)
    first, second = (SharedPacer(tenant, store, BUDGET, WINDOW, instance="i0", fallback_budget=11, instances=4,
                                 wall=clock.wall, mono=clock.wall, sleep=clock.sleep, lookout=here)
                     for tenant in ("t1", "t2"))  # fmt: skip
    assert first.acquire(deadline=clock.now + 60)
    assert second.acquire(deadline=clock.now + 60)  # holds a block of slots: no store call for a while
    store.failing = True
    while not first.counts["fallbacks"]:
        assert first.acquire(deadline=clock.now + 60)
    calls = len(store.calls)
    assert second.acquire(deadline=clock.now + 60)
    assert second.counts["fallbacks"] == 1  # on its split too, though none of its own calls failed
    assert len(store.calls) == calls
    store.failing = False
    clock.now += FALLBACK_SECONDS
    assert second.acquire(deadline=clock.now + 60)
    assert store.rows["t2"].lean_until > clock.now  # back, it tells the others to leave room for the splits


def test_a_tenant_first_written_after_an_outage_leaves_room_for_the_others_splits_too():
    clock = Clock()
    store = MemoryStore(clock)
    here = Lookout(store, clock.wall)
    first = one(clock, store, split=11.5, instances=4, instance="i0", lookout=here, tenant="t1")
    assert first.acquire(deadline=clock.now + 60)
    store.failing = True
    while not first.counts["fallbacks"]:
        assert first.acquire(deadline=clock.now + 60)
    store.failing = False
    clock.now += FALLBACK_SECONDS
    assert first.acquire(deadline=clock.now + 60)  # back on the table
    later = one(clock, store, split=11.5, instances=4, instance="i0", lookout=here, tenant="t2")
    assert later.acquire(deadline=clock.now + 60)  # its first write: the others may still be on their split
    assert store.rows["t2"].lean_until == pytest.approx(store.rows["t1"].lean_until, abs=0.1)


def test_a_slow_table_counts_as_down():
    clock = Clock()
    store = MemoryStore(clock, latency=2.5)
    (pacer,) = pacers(1, clock, store)
    assert pacer.acquire(deadline=clock.now + 60)
    assert pacer.counts["fallbacks"] == 1  # after one slow call: it held every caller behind it for seconds
    assert pacer.counts["storeFailures"] == 1
    calls = len(store.calls)
    for _ in range(5):
        assert pacer.acquire(deadline=clock.now + 60)
    assert len(store.calls) == calls  # the local split meanwhile: no write waits on the slow table


def test_no_slot_before_the_deadline_claims_nothing():
    clock = Clock()
    store = MemoryStore(clock)
    a, b = pacers(2, clock, store)
    a.hold(30.0)
    assert not b.acquire(deadline=clock.now + 1.0)
    assert store.rows["tenant"].next_slot <= clock.now  # nobody's slots were spent on a refusal


def test_back_from_the_split_the_schedule_leaves_room_for_instances_still_on_theirs():
    clock = Clock()
    store = MemoryStore(clock)
    split = Settings(GRAPH_WRITE_BUDGET=BUDGET, GRAPH_PACING_MAX_INSTANCES=4).split_of(BUDGET)  # 11.5
    a, b = (SharedPacer("tenant", store, BUDGET, WINDOW, instance=name, fallback_budget=split, instances=4,
                        wall=clock.wall, mono=clock.wall, sleep=clock.sleep, lookout=Lookout(store, clock.wall))
            for name in "ab")  # fmt: skip
    assert a.acquire(deadline=clock.now + 60)
    store.failing = True
    for _ in range(12):  # its block runs out, then two failed calls: a paces at its split
        assert a.acquire(deadline=clock.now + 60)
    assert a.counts["fallbacks"] == 1
    store.failing = False
    clock.now += FALLBACK_SECONDS
    back = clock.now  # the table answers a again: the others met the same outage, so are back within 10 s
    sent: list[float] = []
    while clock.now < back + FALLBACK_SECONDS + 2 * WINDOW:
        pacer = (a, b)[len(sent) % 2]
        assert pacer.acquire(deadline=clock.now + 60)
        sent.append(clock.now)
    # The three others on their split until the last moment they can be, in step (the worst case for a window).
    splits = [back + FALLBACK_SECONDS - k * WINDOW / split for k in range(int(3 * split))] * 3
    assert max_in_window(sent + splits) <= BUDGET + 1
    assert store.rows["tenant"].lean_until == pytest.approx(back + FALLBACK_SECONDS + WINDOW, abs=0.1)
    # The room comes back as the splits' writes age out of the window, not a window after the last of them.
    early = sum(1 for t in sent if t < back + FALLBACK_SECONDS + WINDOW)
    assert early > (BUDGET - 3 * (math.floor(split) + 1)) * (FALLBACK_SECONDS + WINDOW) / WINDOW * 1.3


def test_a_table_outage_only_the_process_s_deferral_records_met_still_leaves_room_for_the_others_splits():
    clock = Clock()
    store = MemoryStore(clock)
    split = Settings(GRAPH_WRITE_BUDGET=BUDGET, GRAPH_PACING_MAX_INSTANCES=4).split_of(BUDGET)  # 11.5
    lookout = Lookout(store, clock.wall)
    b = one(clock, store, split=split, instances=4, instance="b", lookout=lookout)
    assert b.acquire(deadline=clock.now + 60)
    clock.now += 5.0  # the table out: b's pacer sent nothing meanwhile (its copies waited on their records) ...
    for _ in range(2):  # ... and their reads met the outage
        lookout.failed_elsewhere("TimeoutError")
    clock.now += 1.0
    back = clock.now  # the table answers again; the other three met the outage and are on their split
    sent: list[float] = []
    while clock.now < back + FALLBACK_SECONDS + 2 * WINDOW:
        assert b.acquire(deadline=clock.now + 60)
        sent.append(clock.now)
    splits = [back + FALLBACK_SECONDS - k * WINDOW / split for k in range(int(3 * split))] * 3  # in step, to the end
    assert max_in_window(sent + splits) <= BUDGET + 1
    assert store.rows["tenant"].lean_until == pytest.approx(back + FALLBACK_SECONDS + WINDOW, abs=0.1)


class Connection:
    """One instance's way to the shared store: it can fail for that instance alone (a starved process)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store, self.failing = store, False

    def read(self, key: str) -> BudgetRow:
        self._check()
        return self.store.read(key)

    def write(self, key: str, row: BudgetRow, etag: str | None) -> str:
        self._check()
        return self.store.write(key, row, etag)

    def read_active(self, now: float) -> dict[str, BudgetRow]:
        self._check()
        return self.store.read_active(now)

    def _check(self) -> None:
        if self.failing:
            raise ConnectionError("this instance cannot reach the table")


def outage_of_one(clock: Clock, store: MemoryStore, mine: Connection) -> tuple[SharedPacer, SharedPacer]:
    """Instances a (through `mine`) and b (on the table) of four; a has just lost the table and fallen back."""
    a, b = (SharedPacer("tenant", via, BUDGET, WINDOW, instance=name, fallback_budget=11.5, instances=4,
                        wall=clock.wall, mono=clock.wall, sleep=clock.sleep, lookout=Lookout(via, clock.wall))
            for name, via in (("a", mine), ("b", store)))  # fmt: skip
    assert a.acquire(deadline=clock.now + 60)
    mine.failing = True
    while not a.counts["fallbacks"]:
        assert a.acquire(deadline=clock.now + 60)
    return a, b


def test_an_outage_of_one_instance_alone_leaves_the_schedule_at_the_full_rate():
    clock = Clock()
    store = MemoryStore(clock)
    mine = Connection(store)
    a, b = outage_of_one(clock, store, mine)
    back = clock.now + FALLBACK_SECONDS
    while clock.now < back:  # b stays on the table meanwhile: the outage is a's alone
        assert b.acquire(deadline=clock.now + 60)
    mine.failing = False
    sent = []
    for pacer in itertools.islice(itertools.cycle((a, b)), 2 * BUDGET):
        assert pacer.acquire(deadline=clock.now + 60)
        sent.append(clock.now)
    assert store.rows["tenant"].lean_until < back  # nobody is on a split because of it: no lean period
    assert (len(sent) - 1) / (sent[-1] - sent[0]) == pytest.approx(BUDGET / WINDOW, rel=0.03)


@pytest.mark.parametrize("budget", [1, 9, 49, 99, 999])
def test_the_split_keeps_the_limit_at_any_instance_count(budget: int):
    """Instances without the table, all at their split and in step: together within budget + 1 in every window."""
    for instances in range(1, 1001):
        split = Settings(GRAPH_WRITE_BUDGET=budget, GRAPH_PACING_MAX_INSTANCES=instances).split_of(budget)
        clock = Clock()
        pacer = WritePacer(split, WINDOW, clock=clock.wall, sleep=clock.sleep)
        sent = []
        while clock.now < 1_700_000_000.0 + 3 * WINDOW and pacer.acquire(deadline=clock.now + 3 * WINDOW):
            sent.append(clock.now)
        one = max((sum(1 for t in sent if start <= t <= start + WINDOW) for start in sent), default=0)  # closed
        assert instances * one <= budget + 1, (instances, split, one)
        if split > 0:  # nothing of the budget lost to rounding
            assert instances * (split + 1) == pytest.approx(budget + 1)


class ServiceResponseTimeoutError(Exception):
    """What azure-core raises when the table service accepts the request and never answers (by its name)."""


def test_a_timed_out_call_falls_back_at_once_and_a_refused_one_is_given_a_second_try():
    clock = Clock()
    store = MemoryStore(clock)
    (pacer,) = pacers(1, clock, store)
    store.failing = True  # refused: milliseconds, and maybe a blip
    assert pacer.acquire(deadline=clock.now + 60)
    assert (pacer.counts["storeFailures"], pacer.counts["fallbacks"]) == (2, 1)  # two in a row, then the split

    clock.now += FALLBACK_SECONDS
    timed_out = MemoryStore(clock)
    (pacer,) = pacers(1, clock, timed_out)

    def silent(*args: object, **kwargs: object) -> None:
        clock.now += 2.0  # the read bound, spent
        raise ServiceResponseTimeoutError("no answer")

    timed_out.read_active = timed_out.read = timed_out.write = silent  # type: ignore[method-assign,assignment]
    assert pacer.acquire(deadline=clock.now + 60)
    assert (pacer.counts["storeFailures"], pacer.counts["fallbacks"]) == (1, 1)  # one timeout is enough


def test_a_pipeline_built_again_leaves_no_lookout_of_the_old_one_behind():
    clock = Clock()
    store = MemoryStore(clock)
    pacer = SharedPacer("tenant", store, BUDGET, WINDOW, instance="i0", fallback_budget=BUDGET, wall=clock.wall,
                        mono=clock.wall, sleep=clock.sleep)  # fmt: skip
    assert pacer.acquire(deadline=clock.now + 60)
    assert budget.lookout_of(store, clock.wall) is budget.lookout_of(store, clock.wall)  # one per store
    before = len(budget._lookouts)
    del pacer, store  # the wiring built again: the old store and its pacers are dropped
    gc.collect()
    assert len(budget._lookouts) == before - 1


def test_back_from_an_outage_of_its_own_an_instance_pays_for_its_writes_on_the_split():
    """The schedule never saw them: with the slots after the outage they stay within the budget in every window."""
    clock = Clock()
    store = MemoryStore(clock)
    mine = Connection(store)
    a, b = outage_of_one(clock, store, mine)
    back = clock.now + FALLBACK_SECONDS
    on_split: list[float] = []
    while clock.now < back - WINDOW / 11.5:  # a writes on its split while b stays on the table
        assert a.acquire(deadline=clock.now + 60)
        on_split.append(clock.now)
    assert len(on_split) >= 8
    mine.failing = False
    clock.now = max(clock.now, back)
    after = []
    for pacer in itertools.islice(itertools.cycle((a, b)), 2 * BUDGET):
        assert pacer.acquire(deadline=clock.now + 60)
        after.append(clock.now)
    assert max_in_window(on_split + after) <= BUDGET + 1


def test_a_block_claimed_before_a_table_wide_outage_does_not_make_the_outage_one_instance_s_alone():
    """Only a claim made during the outage proves another instance was on the table: not a block ending after it."""
    clock = Clock()
    store = MemoryStore(clock)
    store.rows["tenant"] = BudgetRow(next_slot=clock.now + 40, last_by="b", claimed_at=clock.now - 1, etag="0")
    a = one(clock, store, split=11.5, instances=4, instance="a")
    store.failing = True
    while not a.counts["fallbacks"]:
        a.acquire(deadline=clock.now + 60)
    clock.now += FALLBACK_SECONDS
    store.failing = False
    back = clock.now
    assert a.acquire(deadline=clock.now + 60)
    # b may be on its split too: room is left for it until its writes there are out of Graph's window.
    assert store.rows["tenant"].lean_until == pytest.approx(back + FALLBACK_SECONDS + WINDOW, abs=0.1)


def test_with_no_share_of_the_budget_a_deferral_comes_back_after_a_window():
    assert WritePacer(0.0, WINDOW).deferral().delay_seconds == WINDOW
