"""The audit trail: every outcome also kept in Azure Table storage, longer than a queue keeps it.

Layout and keys: shared/contract/audit.py. The pipeline records an outcome before it returns it,
so before the host writes it to the result queue. A failed write does not hold the outcome back:
the outcome still goes out, and the failure is logged (`auditFailed`) and counted
(`certstate.audit.failures`, which the `audit` alert watches). Holding the outcome back to retry
would PATCH Graph again and, on a last delivery, could leave a message without any outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, Final

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
    """Writes outcomes to the audit table, and purges what is older than the retention."""

    def __init__(self, table: TableClient, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._table = table
        self._clock = clock

    def record(self, result: Result, body: bytes, enqueued_at: datetime | None) -> None:
        """Upsert every row of the outcome at once (a duplicate outcome replaces them)."""
        rows = entities(result, body, enqueued_at)
        self._table.submit_transaction([("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows])

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
