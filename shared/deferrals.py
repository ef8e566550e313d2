"""Deferral records in the audit table: what the function trusts about a deferred message.

One row per deferred message, beside the audit rows of its day so the daily purge removes it with
them: PartitionKey `<YYYYMMDD the original was enqueued>||deferrals` (no audit partition has an empty
tenant part, so none shares it), RowKey the percent-encoded messageId. Every change is conditional on
the row's ETag (an insert for the first deferral), so of two deliveries racing for the same record one
wins and the other learns it (`RecordChanged`). Each call is one request on shared/tables.py's
kept-alive sockets, bounded in time and never sent twice: a retried write whose first attempt took
effect would report a conflict that was its own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from shared.contract.audit import SEPARATOR, key_part
from shared.contract.envelope import DeferralRecord, RecordChanged
from shared.tables import RowChanged, TableRows, entity

PARTITION_SUFFIX: Final = SEPARATOR + SEPARATOR + "deferrals"


def record_keys(message_id: str, day: str) -> tuple[str, str]:
    """PartitionKey and RowKey of a message's deferral record."""
    return day + PARTITION_SUFFIX, key_part(message_id)


def to_entity(record: DeferralRecord) -> dict[str, Any]:
    """The table row of a record."""
    partition, row = record_keys(record.message_id, record.day)
    return {
        "PartitionKey": partition,
        "RowKey": row,
        "messageId": record.message_id,
        "messageEnqueuedAt": record.enqueued_at,  # not `enqueuedAt`: `certstate history` filters audit rows on it
        "since": record.since,
        "deferral": record.deferral,
        "key": record.key,
        "failedDeliveries": record.failed_deliveries,
        "writtenBy": record.written_by,
        "writerFailedDeliveries": record.writer_failed_deliveries,
        "claimedBy": record.claimed_by,
        **({"slot": record.slot} if record.slot is not None else {}),
    }


def from_entity(entity: dict[str, Any], etag: str | None) -> DeferralRecord:
    """A record read back from its row."""
    return DeferralRecord(
        message_id=str(entity["messageId"]),
        enqueued_at=_datetime(entity["messageEnqueuedAt"]),
        since=_datetime(entity["since"]),
        deferral=int(entity["deferral"]),
        key=str(entity["key"]),
        failed_deliveries=int(entity["failedDeliveries"]),
        written_by=str(entity["writtenBy"]),
        writer_failed_deliveries=int(entity["writerFailedDeliveries"]),
        claimed_by=str(entity.get("claimedBy") or ""),
        etag=etag,
        slot=float(entity["slot"]) if isinstance(entity.get("slot"), int | float) else None,
    )


class DeferralTable:
    """Reads and conditionally writes deferral records.

    `rows` is built with `retry=False` (shared/wiring.py): a conditional write retried after a timeout
    whose first attempt took effect would meet its own ETag change and read as another delivery's
    write. `create_missing` (Azurite): the first insert creates the table.
    """

    def __init__(self, rows: TableRows, *, create_missing: bool = False) -> None:
        self._rows = rows
        self._create_missing = create_missing

    def find(self, message_id: str, day: str) -> DeferralRecord | None:
        """The record of `message_id` on `day`, or None (never written, purged, or no such table)."""
        found = self._rows.get(*record_keys(message_id, day))
        return None if found is None else from_entity(found.properties, found.etag)

    def save(self, record: DeferralRecord, replacing: DeferralRecord | None) -> DeferralRecord:
        """Store `record` if the row is still `replacing` (None: if there is no row); its new ETag.

        Raises `RecordChanged` when another delivery wrote the row first (or it is gone).
        """
        expected = None if replacing is None else replacing.etag or ""
        try:
            etag = self._rows.write(entity(to_entity(record)), expected, create_missing=self._create_missing)
        except RowChanged as err:
            raise RecordChanged(err.code) from None
        return replace(record, etag=etag or None)


def _datetime(value: object) -> datetime:
    """A time as written (`Edm.DateTime`), read back as the service returns it: ISO 8601 text."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    msg = f"a deferral record holds {type(value).__name__} where a datetime belongs"
    raise TypeError(msg)
