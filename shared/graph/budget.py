"""A tenant's write budget shared by every instance of the deployment (docs/design.md, "Pacing across instances").

One row per tenant, all in one partition of an Azure Table of the function's own storage account, holds
a virtual schedule (GCRA-like): `nextSlot`, the first write slot nobody holds yet, in absolute UTC
seconds, one slot every `window / budget` seconds; and `gateUntil`, the end of the last Retry-After any
instance was given. An instance with callers waiting claims a block of consecutive slots for them with
one conditional update (If-Match on the ETag it last saw; a lost race is a 412, then one read and
another try). Slots are disjoint on one timeline, so the writes of all instances together never exceed
the budget in any window. A 429 is merged into `gateUntil`, and while another instance writes to the
tenant (`sharedUntil`), a slot is used only within `HORIZON_SECONDS` of the last look at the tenant's
row, so a Retry-After learned anywhere holds every instance within Graph's in-flight grace; one look
(`Lookout`, one query of the partition) serves every tenant the process writes to.

When the store is slow or unreachable the pacer falls back, for `FALLBACK_SECONDS` at a time, to a
local pacer at `fallback_budget` (the budget split over the deployment's maximum instance count), which
no number of instances can push past the limit; that is logged and counted, and no write waits on the
store longer than one bounded call. Failures the process's deferral records meet count as the pacers'
own (`Lookout.failed_elsewhere`), so that their next claims leave room for the instances on their split.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from shared.graph.pacing import NextSlot, WritePacer
from shared.logs import log_event

if TYPE_CHECKING:
    from shared.tables import Row, TableRows

logger = logging.getLogger("certstate.pacing")

HORIZON_SECONDS: Final = 0.25
"""While others write to the tenant, how far past the last look at its gate a slot may lie: with the
time a gate takes to reach the store and `LOOKED_LATE_SECONDS`, within the simulator's 0.5 s grace."""
LOOKED_LATE_SECONDS: Final = 0.1
"""How late a slot may be used on the strength of a look before its time (half an interval at Intune's
5 writes/s); used later, it needs a look within the horizon of its use."""
SPREAD_SECONDS: Final = 1.0
"""What the lateness a slot allows leaves of an interval at least, for the spread of send latency and the
instances' clocks (a write reaches the simulator 0.2-0.24 s after its send at the 90th percentile on a loaded
two-core machine; NTP keeps instances within milliseconds)."""
ALONE_REACH_SECONDS: Final = 2.0
"""How far one claim reaches while no other instance writes to the tenant (10 slots at 5 writes/s)."""
SHARED_REACH_SECONDS: Final = 1.0
"""How far one claim reaches while others write to the tenant: the callers waiting here, about a second."""
PARTITION: Final = "budget"
"""The one partition of every tenant's row: one query returns all those in use."""
ACTIVE_SECONDS: Final = 1.0
"""A look returns the rows claimed from within this long (their fresh ETags spare the next claim a read)."""
DEFERRAL_LEAD_SECONDS: Final = 2.0
"""A deferred copy's slot lies at least this far out: due half a second early, it is invisible for a second or more."""
FAILURES_TO_FALL_BACK: Final = 2
"""Consecutive refused or failed store calls before the local split takes over (a timed-out or slow one is enough)."""
FALLBACK_SECONDS: Final = 10.0
"""How long the local split is used after the store failed, before the store is tried again."""
SLOW_SECONDS: Final = 2.0
"""A store call slower than this counts as a failure, as its timeout would: the slots it waited for are gone."""
READ_TIMEOUT_SECONDS: Final = 2.0
"""Per store call (with shared/tables.py's 2 s connect bound), never retried: see `TableBudgetStore`."""
CLAIM_ATTEMPTS: Final = 4
PAST_SLOT_MARGIN_SECONDS: Final = 0.5
"""The least lateness a slot gone by must have left to be claimed: a claim slower than that (a store call
usually takes milliseconds, `SLOW_SECONDS` counts as failed) finds it gone and takes the next."""
BOOKING_LOOK_SECONDS: Final = 1.0
"""A process that books copies' turns looks at the rows at least this often (one query for all tenants)."""
_NEVER: Final = float("-inf")
_T = TypeVar("_T")


@dataclass(frozen=True)
class BudgetRow:
    """A tenant's shared schedule as the store holds it; `etag` None: no row yet."""

    next_slot: float = _NEVER
    gate_until: float = _NEVER
    last_by: str = ""
    shared_until: float = _NEVER
    return_at: float = _NEVER
    lean_until: float = _NEVER
    lean_from: float = _NEVER  # the table answered before then: no instance was on a split for it earlier
    claimed_at: float = _NEVER  # when `last_by` last claimed (wall): proof it reached the table then
    etag: str | None = None


@dataclass(eq=False)  # asks are told apart by identity
class _Ask:
    """A deferred copy's request for a turn; `at` is set once a booking took it."""

    at: float | None = None


class Contended(Exception):
    """Another instance changed the row since this one read or wrote it (412), created it first, or deleted it."""


class BudgetStore(Protocol):
    """Where the rows live (`TableBudgetStore`); every write is conditional."""

    def read(self, key: str) -> BudgetRow: ...  # noqa: D102

    def write(self, key: str, row: BudgetRow, etag: str | None) -> str: ...  # noqa: D102

    def read_active(self, now: float) -> dict[str, BudgetRow]: ...  # noqa: D102


class TableBudgetStore:
    """Rows in one table and one partition (`PARTITION`), RowKey the tenant (`home` or its GUID).

    One partition, so that one query returns every row in use (`read_active`). Each call is one request
    on shared/tables.py's kept-alive sockets (its `rows` built with `read_seconds=READ_TIMEOUT_SECONDS`
    and `retry=False`), bounded in time and never sent twice: a conditional write retried after a timeout
    whose first attempt took effect would meet its own ETag and read as another instance's.
    `create_missing` (Azurite): the first insert creates the table; deployed, infra creates it.
    """

    def __init__(self, rows: TableRows, *, create_missing: bool = False) -> None:
        self._rows = rows
        self._create_missing = create_missing

    def read(self, key: str) -> BudgetRow:
        """The tenant's row, or an empty one (no ETag) when there is none yet."""
        found = self._rows.get(PARTITION, key)
        return BudgetRow() if found is None else _row(found)

    def read_active(self, now: float) -> dict[str, BudgetRow]:
        """Every row with a Retry-After in force or slots claimed lately, by tenant: one query.

        A row it leaves out has no gate in force. One request per 1,000 such rows (docs/design.md); every
        page is read: a gate on a row the look did not see would not hold this instance.
        """
        recent = float(now - ACTIVE_SECONDS)
        found = self._rows.query(
            f"PartitionKey eq '{PARTITION}' and (gateUntil gt {float(now)!r} or nextSlot gt {recent!r})"
        )
        return {str(row.properties["RowKey"]): _row(row) for row in found}

    def write(self, key: str, row: BudgetRow, etag: str | None) -> str:
        """Store `row` if the stored one still has `etag` (None: if there is none); the new ETag."""
        from shared.tables import Entity, RowChanged, properties_json  # noqa: PLC0415 - stdlib only, on first use

        entity = Entity(PARTITION, key, properties_json({
            "nextSlot": _finite(row.next_slot),
            "gateUntil": _finite(row.gate_until),
            "lastBy": row.last_by,
            "sharedUntil": _finite(row.shared_until),
            "returnAt": _finite(row.return_at),
            "leanUntil": _finite(row.lean_until),
            "leanFrom": _finite(row.lean_from),
            "claimedAt": _finite(row.claimed_at),
        }))  # fmt: skip
        try:
            return self._rows.write(entity, etag, create_missing=self._create_missing)
        except RowChanged as err:  # created first by another instance, changed since `etag`, or deleted
            raise Contended(err.code) from None


def _finite(value: float) -> float:
    """A schedule time as a table stores it: never-set (-inf) as 0, a time long past."""
    return float(value) if math.isfinite(value) else 0.0


def _row(found: Row) -> BudgetRow:
    """A row as read (point read or query) with its ETag."""
    values = found.properties
    return BudgetRow(
        next_slot=float(values.get("nextSlot", _NEVER)),
        gate_until=float(values.get("gateUntil", _NEVER)),
        last_by=str(values.get("lastBy", "")),
        shared_until=float(values.get("sharedUntil", _NEVER)),
        return_at=float(values.get("returnAt", _NEVER)),
        lean_until=float(values.get("leanUntil", _NEVER)),
        lean_from=float(values.get("leanFrom", _NEVER)),
        claimed_at=float(values.get("claimedAt", _NEVER)),
        etag=found.etag or None,
    )


class Lookout:
    """The rows in use as this process last read them: one look serves every tenant the process writes to.

    A tenant written by several instances needs a look at its gate within `HORIZON_SECONDS` before each
    slot; one query of the partition gives that for every tenant at once, so looks cost at most one
    store call per horizon per process however many tenants it serves, and the rows' ETags they bring
    spare the claims that follow a read of their own.
    """

    def __init__(self, store: BudgetStore, wall: Callable[[], float], *, weak: bool = False) -> None:
        # Weak for the process's registry (`lookout_of`): a lookout that held its store would keep its own
        # key alive, and every pipeline built in the process (tests, a rebuilt wiring) would stay in memory.
        self._store: Callable[[], BudgetStore | None] = weakref.ref(store) if weak else (lambda: store)
        self._wall = wall
        self._lock = threading.Lock()  # one look at a time; those who waited use its answer
        self.looked = _NEVER  # wall time the last look started
        self.rows: dict[str, BudgetRow] = {}
        # The store is one for every tenant: a failure any pacer here meets concerns them all.
        self.outages = 0  # outages this process judged as such (`outage`): a split, or the records' failures
        self.outage_at = _NEVER  # wall: the last of them
        self._counting = threading.Lock()  # tenants' pacers fail under their own locks, not one another's
        self.fallback_until = _NEVER  # monotonic: every tenant's pacer here paces at its split until then
        self._answered_at: float | None = _NEVER  # wall: the first call that answered after the last failure
        self.down_since = _NEVER  # wall: the first failed call since the store last answered
        self._last_answer = _NEVER  # wall: when the last call that answered began
        self._elsewhere = _NEVER  # wall: the last failure another table client of the process met
        self.up_until = _NEVER  # wall: when the last call that answered before the outages in memory began
        self.memory = FALLBACK_SECONDS  # how long an outage's lean period may run after the table is back

    def failed(self, at: float) -> None:
        """Note a failed store call (at `at`, wall) of this process: when the store went down, and was last up before.

        An outage only if judged one (`outage`); the times set how much room the next claims leave.
        """
        with self._counting:
            if self._answered_at is not None:  # a new outage: an earlier one's lean period may still run
                earlier = at - self._answered_at < self.memory
                self.down_since = at
                self.up_until = min(self.up_until, self._last_answer) if earlier else self._last_answer
            self._answered_at = None

    def outage(self, at: float) -> None:
        """The store judged out here at `at` (wall): the pacers' next claims leave room for the others' splits.

        A single failed call is not enough (a pacer falls back after two in a row, or a timeout): leaving that
        room costs every tenant part of its rate for a window, and the room is published to every instance
        (three tenants at eight processes: one refused call, and every tenant at 66-72 % for the drain).
        """
        with self._counting:
            self.outages += 1
            self.outage_at = max(self.outage_at, at)

    def failed_elsewhere(self, reason: str) -> None:
        """A request of another table client of this process failed (`TableRows`' `on_failure`, the deferral records).

        The pacers here may have sent nothing while the table was out (their copies waiting on the records),
        yet instances whose pacers met the outage are on their split: two such failures within the fallback
        period are an outage judged here, so the next claims leave room for those (stall test, four
        processes: an instance that never met the outage claimed at the full rate beside the others' splits,
        and Graph refused two to six writes). One alone is not enough: a kept-alive connection the service
        dropped as it was used, or a thread starved past the read bound, is this process's, and the room
        left after it costs every tenant here part of its rate for a window. Logged once an outage.
        """
        at = self._wall()
        self.failed(at)
        with self._counting:
            recent, self._elsewhere = self._elsewhere, at
            quiet = at - self.outage_at >= FALLBACK_SECONDS  # none judged lately: this one is logged
        if at - recent < FALLBACK_SECONDS:
            self.outage(at)
            if quiet:
                log_event(logger, logging.WARNING, "pacingTableFailed", reason=reason)

    def answered(self, at: float, began: float) -> None:
        """A store call begun at `began` answered at `at` (wall); the first after a failure: the table is back."""
        with self._counting:
            self._last_answer = max(self._last_answer, began)
            if self._answered_at is None:
                self._answered_at = at

    def back_at(self, now: float) -> float:
        """When the table answered this process again after its last failure (`now`: not yet)."""
        with self._counting:
            return now if self._answered_at is None else self._answered_at

    def gate(self, key: str) -> float:
        """The end of the tenant's gate as last seen (-inf: none)."""
        row = self.rows.get(key)
        return row.gate_until if row is not None else _NEVER

    def look(self, since: float, clock: Callable[[], float]) -> float | None:
        """Read the rows in use unless a look started at or after `since` (wall); how long this call's read took.

        None when another look served: the time spent waiting for it is not this call's request.
        """
        with self._lock:
            if self.looked >= since:
                return None
            store = self._store()
            if store is None:
                raise ReferenceError("the pacing store is gone")
            started, began = self._wall(), clock()
            self.rows = store.read_active(started)
            self.looked = started
            return clock() - began


_lookouts: weakref.WeakKeyDictionary[Any, Lookout] = weakref.WeakKeyDictionary()
_lookouts_lock = threading.Lock()


def lookout_of(store: BudgetStore, wall: Callable[[], float] = time.time) -> Lookout:
    """The process's lookout on `store`: every tenant's pacer on one store shares its looks."""
    with _lookouts_lock:
        lookout = _lookouts.get(store)
        if lookout is None:
            lookout = _lookouts[store] = Lookout(store, wall, weak=True)
        return lookout


def _usable(slots: list[float], untils: list[float]) -> int:
    """How many of `slots` (ascending) callers giving up at `untils` (ascending) can take, the soonest due first.

    A caller due before a slot can take no later one either. Shared, a slot claimed and not taken is
    lost to every instance: three callers waiting, one of them due before the third slot, left it empty.
    """
    waiting = iter(untils)
    used = 0
    for slot in slots:
        if next((until for until in waiting if until >= slot), None) is None:
            break
        used += 1
    return used


class SharedPacer:
    """The `Pacer` of one tenant in one process, drawing its slots from the tenant's shared schedule.

    Thread-safe: one store call at a time per tenant and process (`_store`); the callers waiting for a
    slot share what it brings. Times in the schedule are wall-clock seconds (`wall`); deadlines given
    by callers are on their monotonic clock (`mono`), as for `WritePacer`.
    """

    def __init__(
        self,
        key: str,
        store: BudgetStore,
        budget: int,
        window_seconds: float,
        *,
        instance: str,
        fallback_budget: float,
        instances: int = 1,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str, float], None] = lambda reason, seconds: None,
        lookout: Lookout | None = None,
    ) -> None:
        self._key = key
        self._store_api = store
        self._lookout = lookout if lookout is not None else lookout_of(store, wall)
        self._lookout.memory = max(self._lookout.memory, FALLBACK_SECONDS + window_seconds)
        self._interval = window_seconds / budget
        self._budget, self._split = budget, fallback_budget
        self._instances = instances
        # The process's outages as of this pacer's last claim; built within the memory of one (a tenant first
        # written after it), it claims as one that met it, since the others may still be on their split.
        met = self._lookout.outage_at > wall() - self._lookout.memory
        self._outages_seen = self._lookout.outages - met
        self._window = window_seconds
        self._instance = instance
        self._wall, self._mono, self._sleep, self._on_wait = wall, mono, sleep, on_wait
        self._fallback = WritePacer(fallback_budget, window_seconds, clock=mono, sleep=sleep, on_wait=on_wait)
        self._lock = threading.Lock()  # the fields below
        self._store = threading.Lock()  # one store call at a time
        self._row: BudgetRow | None = None  # as last read or written (with its ETag)
        self._slots: deque[float] = deque()  # claimed, not yet used, ascending
        self._looked = _NEVER  # wall time the row was last read or written (a look at the tenant's gate)
        self._shared = False  # another instance writes to the tenant: look before each slot past the horizon
        self._gate = _NEVER  # the Retry-After this process knows of
        self._fallback_until = _NEVER  # monotonic
        self._untils: list[float] = []  # when each caller waiting here gives up (wall)
        self._returns = _NEVER  # the return timeline's next turn as booked here, published with the next claim
        self._asks: list[_Ask] = []  # copies' turns asked for, not yet booked (`deferral`)
        self._split_writes: deque[float] = deque()  # wall times of writes made here on the split, within a window
        self._failures = 0  # consecutive failed store calls (guarded by `_store`)
        self._latency = 0.0  # seconds a store call takes, averaged (guarded by `_store`)
        self._slowest: float | None = None  # the slowest request of the operation in progress (under `_store`)
        self.counts: Counter[str] = Counter()  # store calls and what came of them (benchmarks, diagnostics)

    @property
    def interval(self) -> float:
        """Seconds between two slots of the shared schedule."""
        return self._interval

    @property
    def late_seconds(self) -> float:
        """How late a slot may still be used.

        Less than an interval by at least `SPREAD_SECONDS` or half of one, whichever is more, so that with
        the spread of the network's latency no window gains more than one late write (the one the budget
        keeps back). Half an interval at Intune's 5 writes/s; at a slot every 8 s, a copy read 4 s late
        still writes in its own slot instead of losing the tenant an interval.
        """
        return max(self._interval / 2, self._interval - SPREAD_SECONDS)

    def acquire(self, deadline: float, max_waiting: int | None = None) -> bool:
        """Wait for a write slot; False (and nothing claimed) if none can come by `deadline` (monotonic)."""
        waiting = False
        # Once, so that it is found again in `_untils` (a wall clock stepped back meanwhile lengthens the wait).
        until = self._wall() + (deadline - self._mono())
        try:
            while not self._in_fallback():
                now = self._wall()
                with self._lock:
                    self._purge(now)
                    slot = self._slots[0] if self._slots else None
                    step = self._step(slot, now, until)
                    if step in ("take", "none"):
                        if waiting:  # no longer counted by a claim (`_usable`) from the moment it is served or gives up
                            self._untils.remove(until)
                            waiting = False
                        if step == "none":
                            return False
                        self._slots.popleft()
                        self.counts["slots"] += 1
                        return True
                    if not waiting:
                        if max_waiting is not None and len(self._untils) >= max_waiting:
                            return False
                        waiting = True
                        self._untils.append(until)
                self._wait(step, slot, now, until)
        finally:
            if waiting:  # gone to the split (it takes none of the schedule's slots: nobody yields to it) or failed
                with self._lock:
                    self._untils.remove(until)
        return self._split_acquire(deadline, max_waiting)

    def _wait(self, step: str, slot: float | None, now: float, until: float) -> None:
        """A waiting caller's step (no lock held): yield, wait for the slot, look at the gate, or claim."""
        if step == "yield":  # briefly: the caller due sooner is most likely awake for the same slot
            assert slot is not None
            pause = min(0.01, max(slot + self.late_seconds / 2 - now, 0.001))
            self._on_wait("pacer", pause)
            self._sleep(pause)
        elif step == "wait":
            assert slot is not None
            pause = min(slot - now, max(0.0, slot - HORIZON_SECONDS / 2 - now)) if self._shared else slot - now
            self._on_wait("pacer", pause)
            self._sleep(max(pause, 0.001))
        elif step == "look":
            assert slot is not None
            self._call(functools.partial(self._look, self._look_since(slot, now)))
        elif not self._call(functools.partial(self._claim, until)) and not self._in_fallback():
            self._sleep(min(self._interval, 0.05))  # races lost to other instances: not at once again

    def _step(self, slot: float | None, now: float, until: float) -> str:
        """What a caller does next (lock held): take, yield (to a caller due sooner), wait, look, claim, or none."""
        if slot is None:
            return "none" if self._row is not None and self._start(self._row, now) > until else "claim"
        if slot > until:
            return "none"
        fresh = not self._shared or max(self._looked, self._lookout.looked) >= self._look_since(slot, now)
        if slot <= now:
            if not fresh:
                return "look"
            return "yield" if self._owed(slot, now, until) else "take"
        if not fresh and slot - now <= HORIZON_SECONDS / 2:
            return "look"
        return "wait"

    @staticmethod
    def _look_since(slot: float, now: float) -> float:
        """The latest look a slot needs before it is used now: within the horizon of the slot, or of its use if late."""
        return max(slot, now - LOOKED_LATE_SECONDS) - HORIZON_SECONDS

    def _owed(self, slot: float, now: float, until: float) -> bool:
        """Whether a caller waiting here and due sooner needs this slot: the next one comes too late for it (lock held).

        The soonest due takes the first slot, so a claim sized to what its callers can use (`_usable`) loses
        none: a copy allowed a long wait took the slot of a message due to be deferred 30 ms later, and the
        next slot went unused. Only while the slot has half its lateness left, so that it is rarely lost to
        a caller that does not come for it (one on the split is not counted).
        """
        if now - slot > self.late_seconds / 2:
            return False
        after = self._slots[1] if len(self._slots) > 1 else math.inf
        return any(slot <= other < min(until, after) for other in self._untils)

    def use_booked(self, slot: float, deadline: float) -> bool:
        """A deferred copy at (or after) its booked time: a slot of the shared schedule, past the waiters' cap.

        The booking placed the copy on the tenant's return timeline, one slot after the previous copy of
        any instance, so the copies come back at the rate the schedule frees slots; whichever instance
        picks one up claims its slot here. A copy that comes back late takes the next free slot, and
        none is left empty for it meanwhile.
        """
        if self._in_fallback():
            return False
        early = slot - self._wall() - self.late_seconds
        if early > 0:  # it came back before its time (visibility is in whole seconds): wait for its turn
            if early > min(deadline - self._mono(), DEFERRAL_LEAD_SECONDS):
                self.counts["bookedEarly"] += 1
                return False
            self._on_wait("pacer", early)
            self._sleep(early)
        if self.acquire(deadline):
            self.counts["bookedUsed"] += 1
            return True
        self.counts["bookedMissed"] += 1  # a try that found none: a copy given a long wait after may try twice
        return False

    def hold(self, seconds: float) -> None:
        """Keep the tenant's writes back for `seconds` here at once, and on every instance through the row."""
        until = self._wall() + seconds
        self._fallback.hold(seconds)
        with self._lock:
            self._gate = max(self._gate, until)
            self._purge(self._wall())
        if not self._in_fallback():
            self._call(lambda: self._merge_gate(until))

    def deferral(self) -> NextSlot:
        """Book a turn on the tenant's return timeline for a deferred copy; any instance that picks it up may use it.

        Copies deferred here at once (a batch of the tenant's messages over the callers' cap) share the
        booking: those asking while one is on its way to the row are booked together by the next.
        """
        ask = _Ask()
        if not self._in_fallback():
            with self._lock:
                self._asks.append(ask)
            self._call(self._book)
            with self._lock:
                if ask in self._asks:  # not taken: the store was lost before this ask's turn to be booked
                    self._asks.remove(ask)
        if ask.at is None:
            return self._split_deferral()
        now = self._wall()
        with self._lock:
            gated = max(self._gate_now(), (self._row or BudgetRow()).gate_until) > now
        return NextSlot(delay_seconds=ask.at - now, retry_after=gated, slot=ask.at)

    def _split_deferral(self) -> NextSlot:
        """On the split: back when the store is tried again, unless the split itself has a slot sooner.

        The split's slots lie a window over the split apart (152 s at eight instances of 49 per 800 s), and
        a stall of this process's own store calls is over in `FALLBACK_SECONDS`: copies spread over the
        split's slots came back minutes after the table had answered again. Turns are kept here, one slot
        apart, and reach the row with the next claim; the schedule, not the turns, keeps the limit.
        """
        now = self._wall()
        with self._lock:
            tried = now + max(self._fallback_until - self._mono(), 0.0)
            at = max(tried, now + DEFERRAL_LEAD_SECONDS, self._returns, self._gate_now())
            split = self._fallback.deferral_within(at - now)  # the split's own turn, booked there if sooner
            if split is not None:
                return split
            self._returns = at + self._interval
            gated = self._gate_now() > now
        return NextSlot(delay_seconds=at - now, retry_after=gated, slot=at)

    # -- the store -----------------------------------------------------------------------------------------

    def _call(self, operation: Callable[[], object]) -> bool:
        """Run a store operation (one at a time); on failure or slowness fall back to the local split.

        False when it failed, or when every race for the row was lost: the table answered each time, so
        that is no outage (no split, no lean period), only no result.
        """
        with self._store:
            if self._in_fallback():  # a call this one waited behind failed: no caller waits on the store twice
                return False
            began, self._slowest = self._wall(), None
            try:
                operation()
                done = True
            except Contended:
                self.counts["racesLost"] += 1
                done = False
            except Exception as err:  # unreachable, refused, timed out: the local split takes over
                # A timeout has already cost a whole read bound: the next call would cost another.
                self._failed(type(err).__name__, at_once="Timeout" in type(err).__name__)
                return False
            took = self._slowest  # the slowest request: several races lost in a row are not one slow call
            if took is None:  # no request was sent (another call's look served, or nothing to claim)
                return done
            self._latency += (min(took, SLOW_SECONDS) - self._latency) / 8  # a moving average of store calls
            if took > SLOW_SECONDS:
                self._failed("slow", at_once=True)
                return False
            self._lookout.answered(self._wall(), began)  # a slow answer is a failure, not the table back
            self._failures = 0
            return done

    def _timed(self, request: Callable[[], _T]) -> _T:
        """One store request, its duration kept if it is the slowest of the operation (store lock held)."""
        started = self._mono()
        try:
            return request()
        finally:
            self._took(self._mono() - started)

    def _took(self, seconds: float) -> None:
        self._slowest = seconds if self._slowest is None else max(self._slowest, seconds)

    def _failed(self, reason: str, *, at_once: bool) -> None:
        """Count a failed store call; a slow one, or the second in a row, starts the local split (store lock held).

        A refused connection or a 5xx costs milliseconds and may be a blip; a timed-out or slow call has
        already held every caller waiting behind it for seconds.
        """
        self._failures += 1
        self._lookout.failed(self._wall())
        self.counts["storeFailures"] += 1
        if at_once or self._failures >= FAILURES_TO_FALL_BACK:
            self._failures = 0
            self._fall_back(reason)

    def _fall_back(self, reason: str, until: float | None = None) -> None:
        """Pace at the split until `until` (monotonic; default `FALLBACK_SECONDS` from now), every tenant here.

        First let the blocks other instances hold run out. Coming back, the first claim sets `leanUntil`:
        instances still on their split may write for up to `FALLBACK_SECONDS` more (and those writes stay
        in Graph's window for one more window), so until then the schedule gives out only what the split
        of the others leaves. The other tenants' pacers of this process join (`_in_fallback`): a pacer
        whose slots needed no store call meanwhile would otherwise go on at the full rate, and never tell
        the schedule to leave room.
        """
        until = self._mono() + FALLBACK_SECONDS if until is None else until
        with self._lock:
            if self._fallback_until >= until:
                return  # joined already
            self._fallback_until = until
            self._lookout.fallback_until = max(self._lookout.fallback_until, until)
            self._slots.clear()
            self._row = None
            gate = self._gate - self._wall()
        self._lookout.outage(self._wall())
        if self._instances > 1:
            gate = max(gate, ALONE_REACH_SECONDS)
        if gate > 0:
            self._fallback.hold(gate)
        self.counts["fallbacks"] += 1
        log_event(logger, logging.WARNING, "pacingFallback", tenantId=self._key, reason=reason,
                  seconds=FALLBACK_SECONDS)  # fmt: skip

    def _in_fallback(self) -> bool:
        now = self._mono()
        if now < self._fallback_until:
            return True
        if now < self._lookout.fallback_until:  # another tenant's pacer here lost the store: so did this one
            self._fall_back("store", self._lookout.fallback_until)
            return True
        return False

    def _read(self) -> BudgetRow:
        started = self._wall()
        row = self._timed(functools.partial(self._store_api.read, self._key))
        self.counts["reads"] += 1
        with self._lock:
            self._row, self._looked = row, started
            self._shared = row.shared_until > started or self._others(row, started)
            self._purge(started)
        return row

    def _look_to_book(self) -> None:
        """Before a booking: the row (once), and a look at most every `BOOKING_LOOK_SECONDS` for the process.

        The look keeps a process that only defers in touch with the store: one that met no failure
        while others lost the table would go on at the full rate beside their split, and never tell
        the schedule to leave room for them.
        """
        self._look(self._wall() - BOOKING_LOOK_SECONDS)
        self._seen_row(None)

    def _seen_row(self, since: float | None) -> BudgetRow:
        """The tenant's row as seen at or after `since` (None: as last seen, if ever).

        From the process's look when that has it (one query serves every tenant here), else a read.
        """
        for look in (True, False):
            with self._lock:
                if self._row is not None and (since is None or self._looked >= since):
                    return self._row
            if look:
                self._look(self._wall() - self._interval if since is None else since)
        return self._read()

    def _look(self, since: float) -> None:
        """Look at every tenant's row (one query for the process) unless someone here looked since `since`."""
        lookout = self._lookout
        took = lookout.look(since, self._mono)
        if took is not None:
            self._took(took)
            self.counts["reads"] += 1
            self.counts["looks"] += 1
        with self._lock:
            row = lookout.rows.get(self._key)
            if row is not None and lookout.looked > self._looked:  # newer than this pacer's own view
                self._row, self._looked = row, lookout.looked
                self._shared = self._shared or row.shared_until > lookout.looked or self._others(row, lookout.looked)
            self._purge(self._wall())

    def _others(self, row: BudgetRow, now: float) -> bool:
        """Whether another instance held slots of the tenant within the last window."""
        return row.last_by not in ("", self._instance) and row.next_slot > now - self._window

    def _write(self, row: BudgetRow, base: BudgetRow) -> bool:
        """One conditional write of `row` over `base`; False when another instance wrote first."""
        started = self._wall()
        try:
            etag = self._timed(functools.partial(self._store_api.write, self._key, row, base.etag))
        except Contended:
            self.counts["conflicts"] += 1
            return False
        finally:
            self.counts["writes"] += 1
        with self._lock:
            self._row, self._looked = replace(row, etag=etag), started
        return True

    def _start(self, row: BudgetRow, now: float) -> float:
        """The first slot a claim made now could get: not before another's claim or a Retry-After.

        A slot gone by is still the caller's while enough of the lateness a slot allows (`late_seconds`) is
        left for the claim's round trip: a copy picked up a second after its turn writes in its own
        slot, and the tenant's next slot stays where it was. Taking a new slot at `now` instead would move
        every later slot of the tenant by the copy's lateness, and each late copy by more (fifty tenants
        with a slot every 8 s, one process: copies read 1.7 s after their turn, the median tenant at 95 %).
        Past that, the first slot from when the write can have come back.
        """
        latency = max(self._latency, self._slowest or 0.0)  # the claim's own read counts before any average
        start, earliest = row.next_slot, now + 2 * latency
        # Lateness left for the claim's round trip, so `_purge` does not drop the slot first: four average
        # round trips, and at least half the lateness or `PAST_SLOT_MARGIN_SECONDS`, whichever is less.
        margin = max(4 * latency, min(self.late_seconds / 2, PAST_SLOT_MARGIN_SECONDS))
        oldest = min(earliest, now - self.late_seconds + margin)
        if not math.isfinite(start):
            start = earliest
        elif start < oldest:  # the slots since went unused: the first of them still usable, else a new one now
            later = start + math.ceil((oldest - start) / self._interval) * self._interval
            start = later if later <= earliest else earliest
        return max(start, row.gate_until, self._gate_now())

    def _gate_now(self) -> float:
        return max(self._gate, self._lookout.gate(self._key))

    def _claim(self, until: float) -> None:
        """Claim a block of slots: alone, as far as the reach allows; shared, what the callers waiting here can take."""
        with self._lock:
            if self._slots:
                return  # another caller's claim brought slots meanwhile
        # Shared, a row not seen for a slot's interval has most likely been claimed from since: seen anew,
        # it spares the claim a 412 (and the read after it).
        row = self._seen_row(self._wall() - self._interval if self._shared else None)
        for _ in range(CLAIM_ATTEMPTS):
            now = self._wall()
            start = self._start(row, now)
            if start > until:
                return
            others = self._others(row, now)
            shared = others or row.shared_until > now
            outages = self._lookout.outages  # any outage judged here since the last claim: others may be on the split
            recovering = self._instances > 1 and outages != self._outages_seen
            # Another instance claimed from the row after the outage here began plus a fallback period:
            # it was on the table meanwhile, so the outage was this instance's alone (a slow call in a
            # starved process), and no other is on a split because of it (this one's own writes on its
            # split are skipped from the schedule below). In an outage of the table itself
            # the first instance back finds no such claim and sets the lean period for all.
            local = row.last_by not in ("", self._instance) and (
                row.claimed_at > self._lookout.down_since + FALLBACK_SECONDS)  # fmt: skip
            recovering = recovering and not local
            own = self._split_written(now)  # this instance's own writes on the split: taken from the schedule
            # Instances that met the same outage are back on the table within `FALLBACK_SECONDS` of it
            # answering here; their writes on the split stay in Graph's window one window longer.
            back = self._lookout.back_at(now) + FALLBACK_SECONDS + self._window
            lean = max(row.lean_until, back if recovering else _NEVER)
            # The others can have been on a split only since the table stopped answering, after this
            # instance's last answer before the outage: room for what their splits wrote since, not a window's.
            since = row.lean_from
            if recovering:
                since = min(since, self._lookout.up_until) if row.lean_until > now else self._lookout.up_until
            spacing = functools.partial(self._spacing, lean=lean, since=since)
            step = spacing(start)
            # Alone, a block of two seconds costs a tenth of a store call per write, and a slot nobody takes
            # is nobody else's loss (never longer: an instance falling back waits that long for the blocks
            # others hold); shared, what the callers here can take before they give up, within a second.
            reach = int((SHARED_REACH_SECONDS if shared else ALONE_REACH_SECONDS) / step)
            for _ in range(own):  # claimed even when this caller cannot wait that long: the others must not
                start += spacing(start)
            slots = [start]
            while len(slots) < reach:
                slots.append(slots[-1] + spacing(slots[-1]))
            if shared:  # only what the callers here can take before they give up: another instance may use the rest
                with self._lock:
                    del slots[max(1, _usable(slots, sorted(self._untils))) :]
            end = slots[-1] + spacing(slots[-1])
            new = BudgetRow(end, max(row.gate_until, self._gate), self._instance,
                            max(row.shared_until, end + self._window) if others else row.shared_until,
                            max(row.return_at, self._returns), lean, since, claimed_at=now)  # fmt: skip
            if self._write(new, row):
                self.counts["claims"] += 1
                with self._lock:
                    self._outages_seen = outages
                    while self._split_writes and self._split_writes[0] <= now:  # those counted above: paid for
                        self._split_writes.popleft()
                    self._shared = shared
                    self._slots.extend(slots)
                return
            row = self._read()
        # Every attempt lost: no slot this time (the caller pauses before the next round); no outage either.
        raise Contended(f"{CLAIM_ATTEMPTS} claims in a row lost the race for the row")

    def _split_acquire(self, deadline: float, max_waiting: int | None) -> bool:
        """A slot of the local split; each write on it is remembered until a claim has paid for it."""
        if not self._fallback.acquire(deadline, max_waiting):
            return False
        now = self._wall()
        with self._lock:
            self._split_writes.append(now)
            while self._split_writes[0] <= now - self._window:
                self._split_writes.popleft()
        return True

    def _split_written(self, now: float) -> int:
        """Writes made here on the split that are still in Graph's window at `now`.

        The schedule never saw them: the first claim back skips as many slots, so the window that holds
        them and the slots after the outage together stay within the budget.
        """
        with self._lock:
            return sum(1 for at in self._split_writes if at > now - self._window)

    def _spacing(self, at: float, lean: float, since: float) -> float:
        """Seconds from a slot at `at` to the next: the budget's interval, wider while splits may be in Graph's window.

        Until `lean`, the end of the last window that may hold a write some other instance made on its split
        (from `since` at the earliest, when the table last answered before the outage), a slot leaves room
        for what each of them can have in a window holding it: what its split writes in the part of that
        window it may have been on the split, never more than `floor(split) + 1`. So the room comes back as
        those writes age out of the window, and after a short outage little room is held at all.
        """
        if at >= lean or self._split <= 0 or self._instances == 1:
            return self._interval
        on_split = lean - self._window - max(at - self._window, since)  # the others' split time in the window
        if on_split <= 0:
            return self._interval
        others = min(math.floor(self._split) + 1, math.floor(on_split * self._split / self._window) + 1)
        room = self._budget - (self._instances - 1) * others
        return self._window / room if room > 0 else self._window

    def _book(self) -> None:
        """Book the turns asked for here on the tenant's return timeline, one slot apart after the last copy booked.

        At least `DEFERRAL_LEAD_SECONDS` out, past the slots the callers waiting here will take, and past
        a Retry-After; nothing of the schedule itself is taken, so a late copy wastes no slot. The only
        instance a deployment may have keeps the turns here (they reach the row with its next claim); with
        more, they are taken on the row with one conditional write for all asked meanwhile, so no two
        instances book the same turn: two copies back at one slot leave one of them waiting a whole
        interval for the next, and every copy of the tenant after them too. Whether another instance writes
        to the tenant is not known soon enough to book alone: two processes starting on one backlog each
        saw only their own first claim and booked the same turns. Store lock held.
        """
        with self._lock:
            asks, self._asks = self._asks, []
        if not asks:
            return  # booked by the call this one waited behind
        try:
            self._book_turns(asks)
        except BaseException:  # the store failed: each caller's own call books its ask, or finds the split
            with self._lock:
                self._asks[:0] = [ask for ask in asks if ask.at is None]
            raise

    def _book_turns(self, asks: list[_Ask]) -> None:
        """`_book` for the asks it took (store lock held)."""
        self._look_to_book()
        row = self._row or BudgetRow()
        span = len(asks) * self._interval
        if self._instances == 1:
            with self._lock:
                at = self._first_turn(row, self._wall())
                self._returns = at + span
        else:
            for _ in range(CLAIM_ATTEMPTS):
                now = self._wall()
                with self._lock:
                    at = self._first_turn(row, now)
                # Marked shared for a window: the instance that claimed last looks before its slots from now on.
                shared = max(row.shared_until, now + self._window) if self._others(row, now) else row.shared_until
                if self._write(replace(row, return_at=at + span, shared_until=shared), row):
                    self.counts["turnWrites"] += 1
                    break
                row = self._read()
            else:  # every race lost: kept here (they reach the row with the next claim), as one instance keeps them
                at = max(at, row.return_at)
            with self._lock:
                self._returns = max(self._returns, at + span)
        for i, ask in enumerate(asks):
            ask.at = at + i * self._interval
        self.counts["bookings"] += len(asks)

    def _first_turn(self, row: BudgetRow, now: float) -> float:
        """The next turn on the return timeline (lock held): past the slots the callers waiting here will take.

        Only those they can take before they give up: a message that waits two seconds takes no slot 16 s
        out, and a turn booked past that slot left it empty (fifty tenants, eight processes: one tenant
        lost its second slot in each such drain, and was at 90 %).
        """
        untils = sorted(self._untils)
        after = max(row.next_slot, now)  # the first slot past those held here
        ahead = [*self._slots, *(after + i * self._interval for i in range(len(untils) + 1))]
        first = ahead[_usable(ahead, untils)]
        return max(now + DEFERRAL_LEAD_SECONDS, first, row.return_at, self._returns, row.gate_until, self._gate_now())

    def _merge_gate(self, until: float) -> None:
        """Max-merge a Retry-After into the row's gate (what every instance's look reads)."""
        row = self._seen_row(None)
        for _ in range(CLAIM_ATTEMPTS):
            if row.gate_until >= until:
                return
            if self._write(replace(row, gate_until=until), row):
                self.counts["gates"] += 1
                return
            row = self._read()

    def _purge(self, now: float) -> None:
        """Drop slots gone by, and those under a Retry-After (lock held)."""
        gate = max(self._gate_now(), (self._row or BudgetRow()).gate_until)
        slots = self._slots
        while slots and (slots[0] < now - self.late_seconds or slots[0] < gate):
            slots.popleft()
            self.counts["slotsLost"] += 1
