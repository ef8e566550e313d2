"""The pacing table's contract in memory, for tests of the pacers that share a tenant's budget."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Protocol

from shared.graph.budget import BudgetRow, Contended


class Clock(Protocol):
    """Time the store's latency advances (a test's fake clock)."""

    now: float


class _Still:
    now = 0.0


class MemoryStore:
    """The table's contract: conditional writes on an ETag, a 412 (Contended) on a lost race."""

    def __init__(self, clock: Clock | None = None, *, latency: float = 0.0) -> None:
        self.rows: dict[str, BudgetRow] = {}
        self.etags = itertools.count(1)
        self.calls: list[str] = []
        self.failing = False
        self.clock = clock or _Still()  # real time: a store without latency needs no clock
        self.latency = latency

    def read(self, key: str) -> BudgetRow:
        self._call("read")
        return self.rows.get(key, BudgetRow())

    def write(self, key: str, row: BudgetRow, etag: str | None) -> str:
        self._call("write")
        current = self.rows.get(key)
        if (current.etag if current else None) != etag:
            raise Contended("412")
        new = str(next(self.etags))
        self.rows[key] = replace(row, etag=new)
        return new

    def read_active(self, now: float) -> dict[str, BudgetRow]:
        self._call("look")
        return {key: row for key, row in self.rows.items() if row.gate_until > now or row.next_slot > now - 1}

    def _call(self, kind: str) -> None:
        self.calls.append(kind)
        self.clock.now += self.latency
        if self.failing:
            raise ConnectionError("table service down")
