"""A process-wide circuit breaker for outages of Graph or of the identity endpoint.

Without it, every invocation of an outage retries on its own, and each failed delivery spends one of
the message's `maxDequeueCount` deliveries: a backlog fails within minutes, while hammering the service.
With it, after `threshold` consecutive failures no request leaves the process until the cool-down ends;
then one caller probes. Everyone else is told to come back later (`DeferralRequested`), which the pipeline turns
into a delayed copy of the message, not a failed delivery. Failed probes double the cool-down up to a cap.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode

_JITTER = 0.2
"""Up to this fraction of the base cool-down is added to a deferral, so copies do not return as one burst."""


@dataclass(frozen=True)
class Permit:
    """What `admit` hands out; `probe` numbers the probe its holder is, None while the breaker was closed.

    The holder passes it back to `admit` right before each send, so the probe (and only the probe) still
    goes out once the breaker is open.
    """

    probe: int | None = None


CLOSED = Permit()


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
        self._probes = 0  # the number of the latest probe
        self._cause = ErrorCode.GRAPH_UNAVAILABLE

    def admit(self, permit: Permit | None = None) -> Permit:
        """Return a permit if a request may go out now; raise `DeferralRequested` while the breaker is open.

        Called before a request is prepared and again right before it is sent (with the permit it got):
        an invocation that waited for its write slot meanwhile must not send after the breaker opened,
        unless it is the probe.
        """
        with self._lock:
            if self._open_until is None:
                return CLOSED
            now = self._clock()
            if now < self._open_until:
                raise self._deferral(self._open_until - now)  # back when the probe goes out
            if self._probe_started is not None and now - self._probe_started < self._probe_timeout:
                if permit is not None and permit.probe == self._probes:
                    return permit  # the probe itself, on its way to the send
                # Someone else is probing: its answer is due well within a base cool-down, and if it
                # closes the breaker this message is back then, not a whole (doubled) cool-down later.
                raise self._deferral(self._base_cooldown)
            self._probes += 1
            self._probe_started = now  # this caller is the probe
            return Permit(self._probes)

    def release(self, permit: Permit) -> None:
        """The probe ended without a verdict (deferred, no token in a customer tenant): the next caller probes."""
        with self._lock:
            if permit.probe is not None and permit.probe == self._probes:
                self._probe_started = None

    def succeeded(self) -> None:
        """Graph answered (any status but an outage's or a 401): close."""
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

    def _deferral(self, seconds: float) -> DeferralRequested:
        # The jitter is a fraction of at most the base cool-down: with a doubled cool-down of minutes, a
        # fraction of the whole would spread the backlog over tens of seconds after a successful probe.
        jitter = self._rng.uniform(0, _JITTER) * min(seconds, self._base_cooldown)
        return DeferralRequested(seconds + jitter, DeferralReason.BREAKER_OPEN, self._cause)
