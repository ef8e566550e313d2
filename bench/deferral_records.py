"""CPU of a deferral record's life, each way, on one Azurite table: insert, point read, If-Match replace.

`python -m bench.deferral_records` prints a Markdown table for docs/benchmarks.md (section 6). The same
record and the same three requests as `shared.deferrals.DeferralTable` makes for a deferral and its copy's
claim, through azure-data-tables (no retry, as the records were written) and through `DeferralTable` on
shared/tables.py (deployed); the two interleaved round by round in one process, so the ratio is of one run.
"""

# ruff: noqa: RUF001 - the table is prose; its multiplication signs are meant

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from devstack.azurite import Azurite
from shared.contract.envelope import DeferralRecord
from shared.deferrals import DeferralTable, record_keys, to_entity
from shared.tables import TableRows

ROUNDS, CYCLES, WARM_UP = 5, 100, 30


def _record() -> DeferralRecord:
    now = datetime.now(UTC)
    return DeferralRecord(message_id=f"m-{uuid.uuid4().hex}", enqueued_at=now, since=now, deferral=1, key="k" * 43,
                          failed_deliveries=0, written_by="w", writer_failed_deliveries=0)  # fmt: skip


def _through_sdk(client: TableClient) -> Callable[[], None]:
    def cycle() -> None:
        record = _record()
        entity = to_entity(record)
        client.create_entity(entity, retry_total=0)
        read = client.get_entity(*record_keys(record.message_id, record.day), retry_total=0)
        client.update_entity(dict(entity, claimedBy="copy"), mode=UpdateMode.REPLACE, etag=read.metadata["etag"],
                             match_condition=MatchConditions.IfNotModified, retry_total=0)  # fmt: skip

    return cycle


def _deployed(records: DeferralTable) -> Callable[[], None]:
    def cycle() -> None:
        record = records.save(_record(), None)
        read = records.find(record.message_id, record.day)
        assert read is not None
        records.save(replace(read, claimed_by="copy"), read)

    return cycle


def main() -> None:
    """Measure both ways and print the table."""
    with Azurite() as azurite, TableServiceClient.from_connection_string(azurite.connection_string) as service:
        name = "deferrals" + uuid.uuid4().hex[:8]
        client = service.create_table(name)
        ways = {
            "azure-data-tables: `create_entity`, `get_entity`, `update_entity` with `If-Match`, no retry": _through_sdk(
                client
            ),
            "`DeferralTable` (deployed): shared/tables.py's `POST`, `GET`, `PUT` with `If-Match`, sent once": _deployed(
                DeferralTable(TableRows.from_connection_string(azurite.connection_string, name, retry=False))
            ),
        }
        for cycle in ways.values():
            for _ in range(WARM_UP):
                cycle()
        cpu: dict[str, list[float]] = {label: [] for label in ways}
        for _ in range(ROUNDS):
            for label, cycle in ways.items():
                started = time.process_time()
                for _ in range(CYCLES):
                    cycle()
                cpu[label].append((time.process_time() - started) / CYCLES * 1000)
    deployed = statistics.median(cpu[list(ways)[-1]])
    print(f"*`.venv/bin/python -m bench.deferral_records`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.*\n")
    print("| way of writing and claiming a deferral record | CPU per record (median of rounds) | vs deployed |")
    print("|---|---|---|")
    for label, values in cpu.items():
        median = statistics.median(values)
        print(f"| {label} | **{median:.3f} ms** | {median / deployed:.2f}× |")
    print(f"\n{ROUNDS} rounds × {CYCLES} records each way, interleaved; a record is insert + read + replace.")


if __name__ == "__main__":
    main()
