"""A process-wide circuit breaker for outages of Graph or of the identity endpoint.

Without it, every invocation of an outage retries on its own, and each failed delivery spends one of
the message's `maxDequeueCount` deliveries: a backlog fails within minutes, while hammering the service.
With it, after `threshold` consecutive failures no request leaves the process until the cool-down ends;
then one caller probes. Everyone else is told to come back later (`Deferred`), which the pipeline turns
into a delayed copy of the message, not a failed delivery. Failed probes double the cool-down up to a cap.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from shared.contract.errors import Deferred, ErrorCode

BREAKER_OPEN = "breakerOpen"


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures -> one probe after the cool-down."""

    def __init__(
        self,
        *,
        threshold: int,
        cooldown_seconds: float,
        max_cooldown_seconds: float,
        probe_timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._threshold = threshold
        self._base_cooldown = cooldown_seconds
        self._max_cooldown = max(max_cooldown_seconds, cooldown_seconds)
        self._probe_timeout = probe_timeout_seconds
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._lock = threading.Lock()
        self._failures = 0
        self._cooldown = cooldown_seconds
        self._open_until: float | None = None
        self._probe_started: float | None = None
        self._cause = ErrorCode.GRAPH_UNAVAILABLE

    def admit(self) -> None:
        """Return if a request may go out now; raise `Deferred` while the breaker is open."""
        with self._lock:
            if self._open_until is None:
                return
            now = self._clock()
            if now < self._open_until:
                raise self._deferral(self._open_until - now)
            if self._probe_started is not None and now - self._probe_started < self._probe_timeout:
                raise self._deferral(self._cooldown)  # someone else is probing: its answer will be in by then
            self._probe_started = now  # this caller is the probe

    def succeeded(self) -> None:
        """Graph answered (any status but an outage's): close."""
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._probe_started = None
            self._cooldown = self._base_cooldown

    def failed(self, cause: ErrorCode) -> None:
        """An outage-like failure: a timeout, a dropped connection, a 5xx, no token."""
        with self._lock:
            self._failures += 1
            probing = self._probe_started is not None
            if not probing and (self._open_until is not None or self._failures < self._threshold):
                return
            if probing:
                self._cooldown = min(self._cooldown * 2, self._max_cooldown)
            self._cause = cause
            self._open_until = self._clock() + self._cooldown
            self._probe_started = None

    @property
    def is_open(self) -> bool:
        """True while requests are held back (for telemetry and logs)."""
        with self._lock:
            return self._open_until is not None

    def _deferral(self, seconds: float) -> Deferred:
        # Up to a fifth more, so a backlog does not return in one burst when the probe succeeds.
        return Deferred(seconds * (1 + self._rng.uniform(0, 0.2)), BREAKER_OPEN, self._cause)
