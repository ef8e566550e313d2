"""Deferral records in Azurite's table, and the one bounded send of a copy: what exactly-once rests on."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import AzureError
from azure.data.tables import TableClient

from devstack.azurite import connection_string
from producer.audit import HistoryQuery, history
from shared.contract.envelope import DeferralRecord, RecordChanged
from shared.contract.errors import DeferralReason, DeferralRequested
from shared.deferrals import DeferralTable, record_keys
from shared.pipeline import CertStatePipeline, Delivery
from shared.storage import QueueSender, StorageConnection
from shared.tables import TableError, TableRows
from tests.support.audit import audit_trail
from tests.support.pipeline_fakes import RecordingGraph, body, directory
from tests.support.silent import SilentServer

ENQUEUED = datetime(2026, 11, 27, 23, 59, 30, tzinfo=UTC)


def records_in(connection: str, table: str | TableClient) -> DeferralTable:
    """The records of one table, on shared/tables.py's client as wiring builds it (never sent twice)."""
    name = table if isinstance(table, str) else table.table_name
    return DeferralTable(TableRows.from_connection_string(connection, name, retry=False))


def record(message_id: str = "m-1", **changes: object) -> DeferralRecord:
    fields: dict[str, object] = {
        "message_id": message_id, "enqueued_at": ENQUEUED, "since": ENQUEUED + timedelta(seconds=3), "deferral": 1,
        "key": "k" * 43, "failed_deliveries": 1, "written_by": message_id, "writer_failed_deliveries": 0,
        **changes,
    }  # fmt: skip
    return DeferralRecord(**fields)  # type: ignore[arg-type]


def test_a_record_is_inserted_once_and_changed_only_by_whoever_read_its_latest_version(azurite, table):
    records = records_in(azurite.connection_string, table)
    assert records.find("m-1", "20261127") is None
    first = records.save(record(), None)
    assert first.etag
    with pytest.raises(RecordChanged):
        records.save(record(), None)  # a second first deferral of the same message
    read = records.find("m-1", "20261127")
    assert read == first
    claimed = records.save(record(claimed_by="copy-1", etag=None), read)
    with pytest.raises(RecordChanged):
        records.save(record(claimed_by="copy-2"), read)  # lost the race: the row is no longer what it read
    assert records.find("m-1", "20261127") == claimed
    assert records.find("m-1", "20261128") is None  # the envelope's day only locates it


def test_records_live_in_partitions_the_audit_purge_removes_and_history_never_shows(azurite, table):
    records = records_in(azurite.connection_string, table)
    records.save(record("old"), None)
    records.save(record("new", enqueued_at=ENQUEUED + timedelta(days=40)), None)
    day = HistoryQuery(since=ENQUEUED - timedelta(days=1), until=ENQUEUED + timedelta(days=41))
    assert history(table, day) == []
    assert record_keys("old", "20261127")[0] == "20261127||deferrals"
    deleted = audit_trail(table, clock=lambda: ENQUEUED + timedelta(days=45)).purge(retention_days=30)
    assert deleted == 1
    assert records.find("old", "20261127") is None
    assert records.find("new", "20270106") is not None


def test_without_the_table_nothing_is_found_and_nothing_can_be_deferred(azurite):
    records = records_in(azurite.connection_string, "nosuchtable" + uuid.uuid4().hex[:8])
    assert records.find("m-1", "20261127") is None
    with pytest.raises(TableError) as refused:
        records.save(record(), None)
    assert (refused.value.status, refused.value.code) == (404, "TableNotFound")


def test_a_copy_round_trips_through_the_real_table(azurite, table):
    records, copies = records_in(azurite.connection_string, table), list[str]()

    def handler(graph: RecordingGraph) -> CertStatePipeline:
        return CertStatePipeline(graph=graph, tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
                                 max_dequeue_count=5, requeue=lambda text, _delay: copies.append(text),
                                 deferrals=records, clock=lambda: ENQUEUED + timedelta(seconds=5))  # fmt: skip

    assert (
        handler(RecordingGraph(DeferralRequested(5, DeferralReason.BREAKER_OPEN))).handle(
            body(), Delivery("m-9", 1, ENQUEUED)
        )
        is None
    )
    graph = RecordingGraph()
    result = handler(graph).handle(copies[0].encode(), Delivery("copy-9", 1))
    again = handler(graph).handle(copies[0].encode(), Delivery("copy-9b", 1))
    assert result is not None
    assert again is not None
    assert (result.outcome.status.value, result.outcome.message_id) == ("succeeded", "m-9")
    assert (again.outcome.message_id, again.outcome.error and again.outcome.error.code) == (
        "copy-9b", "duplicateDeferral")  # fmt: skip
    assert len(graph.requests) == 1
    assert json.loads(copies[0])["certstateDeferral"]["day"] == "20261127"


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    with SilentServer() as endpoint:
        yield endpoint


def test_a_copy_whose_send_times_out_is_sent_once_and_the_sender_says_so_in_time(silent):
    """A retried send after a read timeout is how a stalled queue turned one deferral into several copies."""
    sender = QueueSender(StorageConnection(connection_string(silent.port)), "input")
    started = time.monotonic()
    with pytest.raises(AzureError):
        sender.send("{}", 5)
    assert time.monotonic() - started < 9  # one 5 s read
    time.sleep(0.5)
    assert silent.connections == 1


def test_a_table_that_never_answers_fails_the_record_call_in_time(silent):
    records = records_in(connection_string(silent.port, silent.port), "audit")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        records.save(record(), None)
    with pytest.raises(TimeoutError):
        records.find("m-1", "20261127")
    assert time.monotonic() - started < 16  # two 5 s reads, neither retried
    assert silent.connections == 2
