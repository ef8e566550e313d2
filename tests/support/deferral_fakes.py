"""Deferral records in memory, with the table's rules: an insert refuses a row, a replace needs its ETag."""

from __future__ import annotations

import itertools
from dataclasses import replace

from shared.contract.envelope import DeferralRecord, RecordChanged


class MemoryDeferrals:
    """`DeferralStore` in a dict; `failing` makes every call raise it (a table that is down)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], DeferralRecord] = {}
        self.failing: Exception | None = None
        self.calls: list[str] = []
        self._etags = itertools.count(1)

    def find(self, message_id: str, day: str) -> DeferralRecord | None:
        self.calls.append("find")
        if self.failing is not None:
            raise self.failing
        return self.rows.get((message_id, day))

    def save(self, record: DeferralRecord, replacing: DeferralRecord | None) -> DeferralRecord:
        self.calls.append("save")
        if self.failing is not None:
            raise self.failing
        key = (record.message_id, record.day)
        current = self.rows.get(key)
        if (current is None) != (replacing is None) or (current and replacing and current.etag != replacing.etag):
            raise RecordChanged("412")
        stored = replace(record, etag=f"W/{next(self._etags)}")
        self.rows[key] = stored
        return stored

    def only(self) -> DeferralRecord:
        """The one record kept."""
        (record,) = self.rows.values()
        return record
