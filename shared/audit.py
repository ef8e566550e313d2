"""The audit trail: every outcome also kept in Azure Table storage, longer than a queue keeps it.

Layout and keys: shared/contract/audit.py. The pipeline records an outcome before it returns it,
so before the host writes it to the result queue. A failed write does not hold the outcome back:
the outcome still goes out, and the failure is logged (`auditFailed`) and counted
(`certstate.audit.failures`, which the `audit` alert watches). Holding the outcome back to retry
would PATCH Graph again and, on a last delivery, could leave a message without any outcome.

The write is bounded: the invocation waits for it at most `wait_seconds`; past that the outcome goes
out (`AuditTimeout`) while the write finishes or fails on a small pool of writers, bounded by its own
timeouts (shared/tables.py). With no other write in flight the invocation writes the rows on its own
thread, no connect or read waiting past the wait, and a write that meets the wait is sent again from
the pool (an upsert: the same rows again); the hand-over to a writer and back is CPU a message need not
spend while the table keeps up. A stalled table service therefore costs each invocation at most that
wait, and no more than `max_pending` writes are ever held in memory.
Nothing is created on storage before the first write: a missing table (Azurite) is created by the write
that finds it missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING, Any, Final

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
from shared.contract.outcomes import Outcome, Result, Status
from shared.logs import log_event
from shared.tables import MAX_BATCH_BYTES, MAX_OPERATIONS, Entity, TableError, TableRows, properties_json

if TYPE_CHECKING:  # the SDK writes no row here: the purge builds its client when it first runs
    from azure.data.tables import TableClient

logger = logging.getLogger("certstate.audit")

_BATCH: Final = MAX_OPERATIONS
_BATCH_BYTES: Final = MAX_BATCH_BYTES * 3 // 4  # room for percent-encoded keys
_ROW_OVERHEAD: Final = 400  # the framing of one operation in the multipart body
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


def entities(result: Result, body: bytes, enqueued_at: datetime | None) -> list[Entity]:
    """The rows of one outcome (one partition): the outcome row, with the JSON as written, and its index rows.

    The summary every row carries is serialised once: each index row is that text under its own key, and
    the outcome row is that text with the outcome's own properties spliced in.
    """
    outcome = result.outcome
    head = summary(outcome, enqueued_at)
    partition = partition_key(head.enqueued_at, head.tenant_id)
    properties = head.properties()
    shared = properties_json(properties)
    own = split_text("outcome", result.text)
    if outcome.status is Status.FAILED and outcome.request is None:
        own.update(split_bytes("request", body))  # the outcome had to leave it out; replay reads it here
    rows = [Entity(partition, outcome_row_key(head.message_id), f"{shared[:-1]},{properties_json(own)[1:]}")]
    for name in INDEXES:
        value = properties.get(name)
        if isinstance(value, str) and value:
            rows.append(Entity(partition, index_row_prefix(name, value) + key_part(head.message_id), shared))
    return rows


@dataclass
class _Pending:
    """One outcome's rows, waiting for the transaction that carries them."""

    rows: list[Entity]
    done: Future[None] = field(default_factory=Future)

    @property
    def partition(self) -> str:
        return self.rows[0].partition_key

    @property
    def size(self) -> int:
        """About the bytes the rows take in a transaction (their JSON, keys and the framing)."""
        return sum(len(row.properties) + len(row.row_key) + _ROW_OVERHEAD for row in self.rows)


class AuditTrail:
    """Writes outcomes to the audit table within a bounded wait, and purges what is older than the retention.

    Group commit: rows of outcomes waiting at the same time are written together, one entity-group
    transaction per partition (at most 100 rows, 4 MB), each invocation still waiting for its own.
    A transaction is all or nothing, so when one of several outcomes is refused, each is written again
    on its own: one bad row never costs another outcome its record.
    """

    def __init__(
        self,
        rows: TableRows,
        *,
        wait_seconds: float,
        create_missing: bool = False,
        max_pending: int = 32,
        purge_table: Callable[[], TableClient] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`create_missing`: create the table on the first write that finds it missing (Azurite; infra creates it).

        `purge_table`: the SDK's client of the same table, built when the daily purge first needs it.
        """
        self._rows = rows
        self._wait = wait_seconds
        self._create_missing = create_missing
        self._pending = threading.BoundedSemaphore(max_pending)
        self._queue: deque[_Pending] = deque()
        self._queue_lock = threading.Lock()
        self._writing = 0  # writes in flight, here or on the pool (under `_queue_lock`)
        self._writers = ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="certstate-audit")
        self._purge_table = purge_table
        self._clock = clock

    def record(self, result: Result, body: bytes, enqueued_at: datetime | None) -> None:
        """Upsert every row of the outcome at once (a duplicate outcome replaces them), waiting at most the bound."""
        rows = entities(result, body, enqueued_at)
        if not self._pending.acquire(blocking=False):
            msg = "too many audit writes pending"
            raise AuditBacklog(msg)
        pending = _Pending(rows)
        pending.done.add_done_callback(lambda _: self._pending.release())
        with self._queue_lock:
            alone = not self._queue and not self._writing
            if alone:
                self._writing += 1
            else:
                self._queue.append(pending)
        if alone:
            self._write_here(pending)
            return
        self._submit(pending)
        try:
            pending.done.result(timeout=self._wait)
        except FutureTimeout:
            raise AuditTimeout(self._timed_out()) from None

    def _write_here(self, pending: _Pending) -> None:
        """Write the rows on this thread within the wait; if the table is slower, a writer sends them again."""
        try:
            self._write(pending.rows, time.monotonic() + self._wait)
        except TimeoutError:
            with self._queue_lock:
                self._queue.appendleft(pending)  # the oldest: written first, before any later duplicate
            self._submit(pending)
            raise AuditTimeout(self._timed_out()) from None
        except BaseException as err:  # whatever ends the write here, its outcome's wait and its pending slot end too
            pending.done.set_exception(err)
            raise
        else:
            pending.done.set_result(None)
        finally:
            with self._queue_lock:
                self._writing -= 1

    def _submit(self, pending: _Pending) -> None:
        try:
            self._writers.submit(self._commit)
        except RuntimeError as err:  # the pool is shut down (the process is ending): no writer will take it
            with self._queue_lock:
                self._queue = deque(queued for queued in self._queue if queued is not pending)
            pending.done.set_exception(err)

    def _timed_out(self) -> str:
        return f"no answer from the audit table within {self._wait:g} s"

    def _commit(self) -> None:
        """Write the oldest waiting outcome with every other one of its partition that fits (nothing if none wait)."""
        group = self._take()
        if not group:
            return
        try:
            self._commit_group(group)
        finally:
            with self._queue_lock:
                self._writing -= 1

    def _commit_group(self, group: list[_Pending]) -> None:
        try:
            self._write([row for pending in group for row in pending.rows])
        except Exception as err:
            if len(group) == 1:
                group[0].done.set_exception(err)
                return
            for pending in group:  # all or nothing: find which one was refused, keep the others
                try:
                    self._write(pending.rows)
                except Exception as alone:
                    pending.done.set_exception(alone)
                else:
                    pending.done.set_result(None)
            return
        for pending in group:
            pending.done.set_result(None)

    def _take(self) -> list[_Pending]:
        with self._queue_lock:
            if not self._queue:
                return []
            first = self._queue.popleft()
            self._writing += 1
            group, keys = [first], {row.row_key for row in first.rows}
            count, size = len(first.rows), first.size
            for pending in list(self._queue):
                if pending.partition != first.partition:
                    continue
                more = {row.row_key for row in pending.rows}
                if count + len(more) > MAX_OPERATIONS or size + pending.size > _BATCH_BYTES or keys & more:
                    continue  # a duplicate of the same message waits for the next transaction
                self._queue.remove(pending)
                group.append(pending)
                keys |= more
                count, size = count + len(more), size + pending.size
            return group

    def _write(self, rows: list[Entity], deadline: float | None = None) -> None:
        try:
            self._rows.upsert(rows, deadline)
        except TableError as err:  # a transaction on a missing table fails as a whole, TableNotFound
            if not (self._create_missing and err.code == "TableNotFound"):
                raise
            self._rows.create(deadline)  # another invocation may have created it meanwhile: that is fine
            self._rows.upsert(rows, deadline)

    def purge(self, retention_days: int) -> int:
        """Delete every row of a day older than `retention_days` days; how many were deleted."""
        if self._purge_table is None:
            msg = "this audit trail was built without a client to purge with"
            raise RuntimeError(msg)
        table = self._purge_table()
        cutoff = day_key(self._clock() - timedelta(days=retention_days)) + SEPARATOR
        old = table.query_entities(
            "PartitionKey lt @cutoff", parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey"]
        )
        deleted = 0
        for _, rows in groupby(old, key=lambda row: row["PartitionKey"]):
            for batch in _batches(list(rows)):
                table.submit_transaction([("delete", row) for row in batch])
                deleted += len(batch)
        log_event(logger, logging.INFO, "auditPurged", rows=deleted, before=cutoff.rstrip(SEPARATOR))
        return deleted


def _batches(rows: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(rows), _BATCH):
        yield rows[start : start + _BATCH]
