"""The audit trail: every outcome also kept in Azure Table storage, longer than a queue keeps it.

Layout and keys: shared/contract/audit.py. The pipeline records an outcome before it returns it,
so before the host writes it to the result queue. A failed write does not hold the outcome back:
the outcome still goes out, and the failure is logged (`auditFailed`) and counted
(`certstate.audit.failures`, which the `audit` alert watches). Holding the outcome back to retry
would PATCH Graph again and, on a last delivery, could leave a message without any outcome.

The write is bounded: it runs on a small pool of its own and the invocation waits for it at most
`wait_seconds`; past that the outcome goes out (`AuditTimeout`) while the write finishes or fails on
the pool, bounded by the SDK's own timeouts (shared/storage.py). A stalled table service therefore
costs each invocation at most that wait, and no more than `max_pending` writes are ever held in memory.
Nothing is created on storage before the first write: a missing table (Azurite) is created by the write
that finds it missing.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, Final

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables import TableClient, UpdateMode

from shared.contract.audit import (
    INDEXES,
    SEPARATOR,
    AuditSummary,
    day_key,
    index_row_prefix,
    key_part,
    outcome_row_key,
    partition_key,
    split_bytes,
    split_text,
)
from shared.contract.outcomes import Outcome, Status
from shared.logs import log_event
from shared.pipeline import Result

logger = logging.getLogger("certstate.audit")

_BATCH: Final = 100  # operations per entity-group transaction
_WRITERS: Final = 4
"""Threads writing rows: a healthy table answers in milliseconds, so a few keep up with any queue concurrency."""


class AuditTimeout(TimeoutError):
    """The row was not confirmed within the wait; the outcome goes out, the write may still land."""


class AuditBacklog(RuntimeError):
    """Too many writes are still pending (the table is stalled): this outcome's row is not attempted."""


def summary(outcome: Outcome, enqueued_at: datetime | None) -> AuditSummary:
    """The summary of an outcome; without an enqueue time (a test's delivery), its completion time."""
    target = outcome.target
    return AuditSummary(
        message_id=outcome.message_id,
        status=outcome.status.value,
        completed_at=outcome.completed_at,
        enqueued_at=enqueued_at or outcome.completed_at,
        correlation_id=outcome.correlation_id,
        code=outcome.error.code if outcome.error else None,
        http_status=outcome.http_status,
        tenant_id=target.tenant_id,
        profile_type=target.profile_type,
        device_configuration_id=target.device_configuration_id,
        managed_device_certificate_state_id=target.managed_device_certificate_state_id,
        via=target.via,
        attempts=outcome.attempts,
        dequeue_count=outcome.dequeue_count,
        duration_ms=outcome.duration_ms,
        request_id=outcome.graph.request_id if outcome.graph else None,
    )


def entities(result: Result, body: bytes, enqueued_at: datetime | None) -> list[dict[str, Any]]:
    """The rows of one outcome (one partition): the outcome row, with the JSON as written, and its index rows."""
    outcome = result.outcome
    head = summary(outcome, enqueued_at)
    partition = partition_key(head.enqueued_at, head.tenant_id)
    properties = head.properties()
    main = {"PartitionKey": partition, "RowKey": outcome_row_key(head.message_id), **properties}
    main.update(split_text("outcome", result.text))
    if outcome.status is Status.FAILED and outcome.request is None:
        main.update(split_bytes("request", body))  # the outcome had to leave it out; replay reads it here
    rows = [main]
    for field in INDEXES:
        value = properties.get(field)
        if isinstance(value, str) and value:
            key = index_row_prefix(field, value) + key_part(head.message_id)
            rows.append({"PartitionKey": partition, "RowKey": key, **properties})
    return rows


class AuditTrail:
    """Writes outcomes to the audit table within a bounded wait, and purges what is older than the retention."""

    def __init__(
        self,
        table: TableClient,
        *,
        wait_seconds: float,
        create_missing: bool = False,
        max_pending: int = 32,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`create_missing`: create the table on the first write that finds it missing (Azurite; infra creates it)."""
        self._table = table
        self._wait = wait_seconds
        self._create_missing = create_missing
        self._pending = threading.BoundedSemaphore(max_pending)
        self._writers = ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="certstate-audit")
        self._clock = clock

    def record(self, result: Result, body: bytes, enqueued_at: datetime | None) -> None:
        """Upsert every row of the outcome at once (a duplicate outcome replaces them), waiting at most the bound."""
        rows = entities(result, body, enqueued_at)
        if not self._pending.acquire(blocking=False):
            msg = "too many audit writes pending"
            raise AuditBacklog(msg)
        # The message's context (its span, its log fields) goes with the write to the pool's thread.
        write = self._writers.submit(contextvars.copy_context().run, self._write, rows)
        write.add_done_callback(lambda _: self._pending.release())
        try:
            write.result(timeout=self._wait)
        except FutureTimeout:
            msg = f"no answer from the audit table within {self._wait:g} s"
            raise AuditTimeout(msg) from None

    def _write(self, rows: list[dict[str, Any]]) -> None:
        operations = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows]
        try:
            self._table.submit_transaction(operations)
        except HttpResponseError as err:  # a transaction on a missing table fails as a whole, TableNotFound
            if not (self._create_missing and getattr(err, "error_code", None) == "TableNotFound"):
                raise
            with contextlib.suppress(ResourceExistsError):  # another invocation created it meanwhile
                self._table.create_table()
            self._table.submit_transaction(operations)

    def purge(self, retention_days: int) -> int:
        """Delete every row of a day older than `retention_days` days; how many were deleted."""
        cutoff = day_key(self._clock() - timedelta(days=retention_days)) + SEPARATOR
        old = self._table.query_entities(
            "PartitionKey lt @cutoff", parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey"]
        )
        deleted = 0
        for _, rows in groupby(old, key=lambda row: row["PartitionKey"]):
            for batch in _batches(list(rows)):
                self._table.submit_transaction([("delete", row) for row in batch])
                deleted += len(batch)
        log_event(logger, logging.INFO, "auditPurged", rows=deleted, before=cutoff.rstrip(SEPARATOR))
        return deleted


def _batches(rows: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(rows), _BATCH):
        yield rows[start : start + _BATCH]
