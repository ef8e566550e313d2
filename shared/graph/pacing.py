"""A process's own pacing of Graph writes, one pacer per tenant: the split used without the pacing table.

`WritePacer` (a) spaces writes evenly so the process never sends more than `budget` in any `window`, and
(b) holds every write to the tenant back while a Retry-After is in force, so a 429 for one message is
honoured by all of them, and by no other tenant's. Shared across instances, the tenant's `SharedPacer`
(shared/graph/budget.py) draws slots from the pacing table and falls back to a `WritePacer` at the split.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol


class WritePacer:
    """A thread-safe write slot scheduler with a Retry-After gate.

    `budget` writes per `window_seconds`, evenly spaced; it may be a fraction (a slot every few windows).
    """

    def __init__(
        self,
        budget: float,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str, float], None] = lambda reason, seconds: None,
    ) -> None:
        # A fraction of a write per window is a slot every few windows; none (budget 0): no slot at all.
        self._interval = window_seconds / budget if budget > 0 else math.inf
        self._window = window_seconds
        self._on_wait = on_wait  # ("pacer" | "retryAfter", seconds): telemetry of the time writes wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf") if budget > 0 else math.inf
        self._gate_until = float("-inf")
        self._return_at = float("-inf")
        self._waiting = 0

    def acquire(self, deadline: float, max_waiting: int | None = None) -> bool:
        """Wait for a write slot; False (and nothing reserved) if it cannot come by `deadline`.

        With `max_waiting`, also False when that many callers already wait: more waiters than the
        tenant needs to fill its slots would only hold invocation slots other tenants could use.
        """
        waiting = False
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    slot = self._free_slot(now)
                    if slot > deadline:
                        return False
                    if slot <= now:
                        self._next_slot = now + self._interval
                        return True
                    if not waiting:
                        if max_waiting is not None and self._waiting >= max_waiting:
                            return False
                        waiting = True
                        self._waiting += 1
                    reason = "retryAfter" if self._gate_until >= self._next_slot else "pacer"
                # Not reserved while waiting: a Retry-After that arrives meanwhile still applies.
                self._on_wait(reason, slot - now)
                self._sleep(slot - now)
        finally:
            if waiting:
                with self._lock:
                    self._waiting -= 1

    def use_booked(self, slot: float, deadline: float) -> bool:
        """A process-local pacer books no shared slots: a copy takes the usual way."""
        return False

    def hold(self, seconds: float) -> None:
        """Keep every write of the process back for `seconds` (a Retry-After)."""
        with self._lock:
            self._gate_until = max(self._gate_until, self._clock() + seconds)

    def _free_slot(self, now: float) -> float:
        return max(now, self._next_slot, self._gate_until)

    @property
    def interval(self) -> float:
        """Seconds between two write slots."""
        return self._interval

    def deferral(self) -> NextSlot:
        """When a message that found no slot soon should come back, booking that time for it.

        Deferred messages are spread one slot apart from the first slot no caller is waiting for,
        so a backlog put back on the queue returns at the rate it can be written, not all at once,
        and not onto slots the waiting callers will take.
        """
        turn = self.deferral_within(math.inf)
        assert turn is not None
        return turn

    def deferral_within(self, seconds: float) -> NextSlot | None:
        """`deferral`, booked only if the message comes back within `seconds`; None (nothing booked) if not."""
        with self._lock:
            now = self._clock()
            retry_after = self._gate_until > now
            if math.isinf(self._interval):  # no share of the budget: back after a window, when the table may answer
                return NextSlot(self._window, retry_after) if self._window <= seconds else None
            slot = self._free_slot(now) + self._waiting * self._interval
            at = max(slot, self._return_at)
            if at - now > seconds:
                return None
            self._return_at = at + self._interval
            return NextSlot(delay_seconds=at - now, retry_after=retry_after)


class NextSlot(NamedTuple):
    """How long a message waits outside the process, whether a Retry-After is why, and its booked slot.

    `slot` (wall-clock seconds) is a slot of the tenant's shared schedule held for the copy
    (shared/graph/budget.py); None when the slot is only this process's to keep.
    """

    delay_seconds: float
    retry_after: bool
    slot: float | None = None


class Pacer(Protocol):
    """A tenant's write pacing as the Graph client uses it: `WritePacer`, or `budget.SharedPacer`."""

    @property
    def interval(self) -> float: ...  # noqa: D102

    def acquire(self, deadline: float, max_waiting: int | None = None) -> bool: ...  # noqa: D102

    def use_booked(self, slot: float, deadline: float) -> bool: ...  # noqa: D102

    def hold(self, seconds: float) -> None: ...  # noqa: D102

    def deferral(self) -> NextSlot: ...  # noqa: D102
