"""Which customer tenants are served, active or paused, and with which write reserve (docs/tenants.md).

Two sources: `SERVED_TENANT_IDS` (small deployments; every tenant active, no reserve) and the tenant
registry, a table of the function's own storage the operator edits with `certstate tenants`. A
registry row wins for its tenant (so a tenant of the setting can be paused or given a reserve); a tenant
of the setting without a row is served active.

The registry is read on lookup, at most once per `REGISTRY_REFRESH_SECONDS`, by one invocation at a time
(the others wait for that read, bounded): nothing is read while the pipeline is built, and a change
applies to every message that arrives one interval after it, in any process, without a restart. Each read
is one bounded storage call (shared/storage.py). When it fails, the last registry read goes on serving;
before any read succeeded, a registry tenant's message is handed back (`registryUnavailable`, transient)
rather than rejected, and a tenant nobody registered is never served: no token is asked for it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from shared.contract.errors import ErrorCode, TransientError
from shared.contract.tenants import TenantEntry, from_entity
from shared.logs import log_event

logger = logging.getLogger("certstate")

RETRY_AFTER_FAILURE_SECONDS: Final = 5.0
"""After a failed read, the next one waits this long (or the refresh interval, if shorter): a storage outage
costs one call per interval, not one per message."""


class TenantRegistry:
    """The registry table's rows, cached and re-read on lookup at most every `refresh_seconds`.

    `read` lists the table's rows (one bounded call); it is called only by `lookup`, under a lock, so
    concurrent lookups never read twice: one reads, and the others wait for its result (at most
    `wait_seconds`, then they answer from the last read), so none answers from a read older than the interval.
    """

    def __init__(
        self,
        read: Callable[[], Iterable[Mapping[str, Any]]],
        *,
        refresh_seconds: float,
        wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._refresh = refresh_seconds
        self._wait = wait_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, TenantEntry] | None = None  # None: never read
        self._due = float("-inf")  # when the next read may happen

    def lookup(self, tenant_id: str) -> TenantEntry | None:
        """The tenant's row as last read (re-read first if the interval passed); raises if never read."""
        entries = self._current()
        if entries is None:
            raise TransientError(
                code=ErrorCode.REGISTRY_UNAVAILABLE,
                message="the tenant registry has not been read since the process started",
            )
        return entries.get(tenant_id)

    def entries(self) -> dict[str, TenantEntry] | None:
        """Every row as last read (None if never read), without reading."""
        return self._entries

    def _current(self) -> dict[str, TenantEntry] | None:
        entries = self._entries
        if entries is not None and self._clock() < self._due:
            return entries
        if not self._lock.acquire(timeout=self._wait):  # another invocation's read: wait for it, bounded
            return self._entries
        try:
            if self._clock() >= self._due:
                self._refresh_now()
            return self._entries
        finally:
            self._lock.release()

    def _refresh_now(self) -> None:
        started = self._clock()
        try:
            rows = list(self._read())
        except Exception as err:  # unreachable, slow, refused: the last read serves
            self._due = started + min(self._refresh, RETRY_AFTER_FAILURE_SECONDS)
            log_event(logger, logging.WARNING, "registryUnreadable", reason=type(err).__name__,
                      serving=len(self._entries) if self._entries is not None else None)  # fmt: skip
            return
        entries: dict[str, TenantEntry] = {}
        skipped = 0
        for row in rows:
            try:
                entry = from_entity(row)
            except (ValueError, TypeError):
                skipped += 1
                continue
            entries[entry.tenant_id] = entry
        changed = entries != self._entries
        self._entries = entries
        self._due = self._clock() + self._refresh
        if changed or skipped:
            log_event(logger, logging.INFO if not skipped else logging.WARNING, "registryRead",
                      tenants=len(entries), paused=sum(e.paused for e in entries.values()),
                      skippedRows=skipped or None, durationMs=round((self._clock() - started) * 1000))  # fmt: skip


class Served:
    """`ServedTenants` from SERVED_TENANT_IDS and, if there is one, the registry: a registry row wins."""

    def __init__(
        self,
        static: Iterable[str],
        registry: TenantRegistry | None,
        *,
        paused_recheck_seconds: float,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._static = {tenant: TenantEntry(tenant) for tenant in static}
        self._registry = registry
        self._recheck = paused_recheck_seconds
        self._jitter = jitter

    def lookup(self, tenant_id: str) -> TenantEntry | None:
        """The registry's row, else the setting's entry; before the registry was ever read, the setting alone."""
        if self._registry is None:
            return self._static.get(tenant_id)
        try:
            row = self._registry.lookup(tenant_id)
        except TransientError:
            if tenant_id in self._static:
                return self._static[tenant_id]
            raise
        return row or self._static.get(tenant_id)

    def paused_delay(self) -> float:
        """One recheck interval plus up to one more, so a paused backlog does not come back in one burst."""
        return self._recheck * (1 + self._jitter())

    def display_name(self, tenant_id: str | None) -> str | None:
        """The tenant's display name as last read, without reading (None: home, unnamed or unknown)."""
        entries = self._registry.entries() if self._registry is not None and tenant_id else None
        entry = entries.get(tenant_id) if entries is not None and tenant_id else None
        return entry.display_name or None if entry is not None else None

    @property
    def registry(self) -> TenantRegistry | None:
        """The registry, if this deployment has one (for diagnostics and benchmarks)."""
        return self._registry
