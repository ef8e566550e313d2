"""Deferral records in the audit table: what the function trusts about a deferred message.

One row per deferred message, beside the audit rows of its day so the daily purge removes it with
them: PartitionKey `<YYYYMMDD the original was enqueued>||deferrals` (no audit partition has an empty
tenant part, so none shares it), RowKey the percent-encoded messageId. Every change is conditional on
the row's ETag (an insert for the first deferral), so of two deliveries racing for the same record one
wins and the other learns it (`RecordChanged`). Each call is one request bounded in time with no SDK
retry: a retried write whose first attempt took effect would report a conflict that was its own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from shared.contract.audit import SEPARATOR, key_part
from shared.contract.envelope import DeferralRecord, RecordChanged

if TYPE_CHECKING:  # the storage SDK loads with the first deferral, not when the pipeline is built
    from azure.data.tables import TableClient

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
    """Reads and conditionally writes deferral records; the table client is built on first use.

    Each call is one request (the client's timeouts, shared/storage.py, and no retry): a conditional
    write retried after a timeout whose first attempt took effect would meet its own ETag change and
    read as another delivery's write. `create_missing` (Azurite): the first insert creates the table.
    """

    def __init__(self, table: Callable[[], TableClient], *, create_missing: bool = False) -> None:
        self._table_factory = table
        self._table: TableClient | None = None
        self._lock = threading.Lock()
        self._create_missing = create_missing
        self._bounds: dict[str, Any] = {"retry_total": 0}

    def find(self, message_id: str, day: str) -> DeferralRecord | None:
        """The record of `message_id` on `day`, or None (never written, purged, or no such table)."""
        from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - on first use

        partition, row = record_keys(message_id, day)
        try:
            entity = self._client().get_entity(partition, row, **self._bounds)
        except ResourceNotFoundError:
            return None
        return from_entity(dict(entity), entity.metadata.get("etag"))

    def save(self, record: DeferralRecord, replacing: DeferralRecord | None) -> DeferralRecord:
        """Store `record` if the row is still `replacing` (None: if there is no row); its new ETag.

        Raises `RecordChanged` when another delivery wrote the row first (or it is gone).
        """
        from azure.core import MatchConditions  # noqa: PLC0415 - on first use
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError  # noqa: PLC0415
        from azure.data.tables import UpdateMode  # noqa: PLC0415

        entity = to_entity(record)
        try:
            if replacing is None:
                written = self._client().create_entity(entity, **self._bounds)
            else:
                written = self._client().update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=replacing.etag,
                    match_condition=MatchConditions.IfNotModified,
                    **self._bounds,
                )
        except (ResourceExistsError, ResourceModifiedError) as err:
            raise RecordChanged(type(err).__name__) from None
        except ResourceNotFoundError as err:
            if replacing is not None:
                raise RecordChanged(type(err).__name__) from None
            if not self._create_missing:  # no table to insert into: the deferral is impossible, not contested
                raise
            with contextlib.suppress(ResourceExistsError):
                self._client().create_table(**self._bounds)
            written = self._client().create_entity(entity, **self._bounds)
        etag = written.get("etag")
        return replace(record, etag=str(etag) if etag else None)

    def _client(self) -> TableClient:
        with self._lock:
            if self._table is None:
                self._table = self._table_factory()
            return self._table


def _datetime(value: object) -> datetime:
    if not isinstance(value, datetime):
        msg = f"a deferral record holds {type(value).__name__} where a datetime belongs"
        raise TypeError(msg)
    return value
