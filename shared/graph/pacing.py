"""Process-wide pacing of Graph writes.

Intune allows 100 writes per 20 s per app per tenant. Every concurrent invocation of this
process shares one `WritePacer`, which (a) spaces writes evenly so the process never sends
more than `budget` in any `window`, and (b) holds every write back while a Retry-After is
in force, so a 429 for one message is honoured by all of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class WritePacer:
    """A thread-safe write slot scheduler with a Retry-After gate."""

    def __init__(
        self,
        budget: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str, float], None] = lambda reason, seconds: None,
    ) -> None:
        self._interval = window_seconds / budget
        self._on_wait = on_wait  # ("pacer" | "retryAfter", seconds): telemetry of the time writes wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf")
        self._gate_until = float("-inf")

    def acquire(self, deadline: float) -> bool:
        """Wait for a write slot; False (and nothing reserved) if it cannot come by `deadline`."""
        while True:
            with self._lock:
                now = self._clock()
                slot = max(now, self._next_slot, self._gate_until)
                if slot > deadline:
                    return False
                if slot <= now:
                    self._next_slot = now + self._interval
                    return True
                reason = "retryAfter" if self._gate_until >= self._next_slot else "pacer"
            # Not reserved while waiting: a Retry-After that arrives meanwhile still applies.
            self._on_wait(reason, slot - now)
            self._sleep(slot - now)

    def hold(self, seconds: float) -> None:
        """Keep every write of the process back for `seconds` (a Retry-After)."""
        with self._lock:
            self._gate_until = max(self._gate_until, self._clock() + seconds)

    def wait_seconds(self) -> float:
        """How long until a write could go out: the basis of a deferral when the wait is too long."""
        with self._lock:
            return max(0.0, self._next_slot - self._clock(), self._gate_until - self._clock())
