"""The audit trail in Azure Table storage (Azurite): every outcome kept, a duplicate replaces, and
"what happened to X" answered by correlation id, configuration, state, tenant, status and day."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient, TableServiceClient

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from producer.audit import HistoryQuery, full_record, history
from shared.audit import AuditBacklog, AuditTimeout, AuditTrail
from shared.contract.audit import TEXT_PART_CHARS
from shared.contract.errors import ErrorCode, GraphRefused, GraphTrace
from shared.contract.outcomes import ConsentState, Outcome, Result, Status
from shared.graph.consent import ConsentResult
from shared.pipeline import CertStatePipeline, Delivery
from shared.settings import Settings
from shared.tables import SharedKey, TableError, TableRows, entity
from shared.wiring import build_audit
from tests.integration.test_tables import SlowServer
from tests.support.audit import audit_trail, lean_rows
from tests.support.otel import capture
from tests.support.pipeline_fakes import RecordingGraph, body, directory
from tests.support.silent import SilentServer

ENQUEUED = datetime(2026, 11, 27, 23, 59, 30, tzinfo=UTC)
DAY = HistoryQuery(since=ENQUEUED - timedelta(hours=1), until=ENQUEUED + timedelta(hours=1))


def rows_of(table: TableClient) -> list[dict[str, object]]:
    return list(table.list_entities())


def pipeline(table: TableClient, *answers, clock=lambda: ENQUEUED + timedelta(seconds=5)) -> CertStatePipeline:
    return CertStatePipeline(
        graph=RecordingGraph(*answers), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5, clock=clock, audit=audit_trail(table),
    )  # fmt: skip


def result_of(audited: CertStatePipeline, data: bytes, delivery: Delivery) -> Result:
    result = audited.handle(data, delivery)
    assert result is not None
    return result


def outcome_of(audited: CertStatePipeline, data: bytes, delivery: Delivery) -> Outcome:
    return result_of(audited, data, delivery).outcome


def forbidden() -> GraphRefused:
    return GraphRefused(code=ErrorCode.GRAPH_FORBIDDEN, message="no", http_status=403, trace=GraphTrace("r", "c"))


def test_an_outcome_is_one_row_and_an_index_row_per_id(table):
    result = result_of(pipeline(table), body(), Delivery("m-1", 1, ENQUEUED))
    keys = sorted((row["PartitionKey"], row["RowKey"]) for row in rows_of(table))
    assert keys == [
        ("20261127|-", "c|order-4711|m-1"),
        ("20261127|-", "d|cfg-1|m-1"),
        ("20261127|-", "m|m-1"),
        ("20261127|-", "s|state-1|m-1"),
    ]
    (found,) = history(table, DAY)
    assert (found.message_id, found.status, found.correlation_id, found.http_status) == (
        "m-1",
        "succeeded",
        "order-4711",
        200,
    )
    assert found.enqueued_at == ENQUEUED
    assert full_record(table, found).outcome == json.loads(result.text)  # the outcome as it was written


def test_the_duplicate_of_an_outcome_replaces_its_rows_of(table):
    """At-least-once: the redelivery's outcome (here a different one) leaves one set of rows, the latest."""
    pipeline(table).handle(body(), Delivery("m-1", 1, ENQUEUED))
    later = lambda: ENQUEUED + timedelta(minutes=3)  # noqa: E731
    pipeline(table, forbidden(), clock=later).handle(body(), Delivery("m-1", 2, ENQUEUED))
    assert len(rows_of(table)) == 4
    (found,) = history(table, DAY)
    assert (found.status, found.code, found.dequeue_count) == ("failed", "graphForbidden", 2)


@pytest.mark.parametrize(
    ("criterion", "value"),
    [
        ("correlation_id", "order-4711"),
        ("device_configuration_id", "cfg-1"),
        ("managed_device_certificate_state_id", "state-1"),
        ("message_id", "m-2"),
        ("status", "failed"),
    ],
)
def test_history_by_each_criterion(table, criterion, value):
    audited = pipeline(table, forbidden())
    audited.handle(body(), Delivery("m-1", 1, ENQUEUED))  # failed
    audited.handle(body(), Delivery("m-2", 1, ENQUEUED))  # succeeded
    audited.handle(body(correlationId="other", deviceConfigurationId="cfg-2", managedDeviceCertificateStateId="s-2"),
                   Delivery("m-3", 1, ENQUEUED))  # fmt: skip
    found = history(table, HistoryQuery(since=DAY.since, until=DAY.until, **{criterion: value}))
    expected = {"message_id": ["m-2"], "status": ["m-1"]}.get(criterion, ["m-1", "m-2"])
    assert [s.message_id for s in found] == expected


def test_history_is_bounded_by_the_time_range_across_days(table):
    audited = pipeline(table)
    for n, enqueued in enumerate([ENQUEUED - timedelta(days=3), ENQUEUED, ENQUEUED + timedelta(minutes=1)]):
        audited.handle(body(), Delivery(f"m-{n}", 1, enqueued))
    assert [s.message_id for s in history(table, DAY)] == ["m-1", "m-2"]  # the second crosses into the 28th
    wide = HistoryQuery(
        since=ENQUEUED - timedelta(days=5), until=ENQUEUED + timedelta(days=1), correlation_id="order-4711"
    )
    assert [s.message_id for s in history(table, wide)] == ["m-0", "m-1", "m-2"]
    partitions = {row["PartitionKey"] for row in rows_of(table)}
    assert partitions == {"20261124|-", "20261127|-", "20261128|-"}


def test_the_original_request_of_a_failed_outcome_that_left_it_out_is_kept_byte_for_byte(table):
    """A failed outcome too big with its request goes out with `request: null`; the audit row keeps the body."""
    original = body(
        update={"certificateKeyUsage": "digitalSignature", "certificateSubjectNameFormatString": "x" * 64_900}
    )
    outcome = outcome_of(pipeline(table, forbidden()), original, Delivery("m-1", 5, ENQUEUED))
    assert outcome.status is Status.FAILED
    assert outcome.request is None  # cut by the outcome size rule
    (main,) = [row for row in rows_of(table) if str(row["RowKey"]).startswith("m|")]
    assert main["requestParts"] == 2
    (found,) = history(table, DAY)
    record = full_record(table, found)
    assert record.original_request == original
    assert record.outcome["request"] is None
    # requestOmitted names the compact JSON form (what the producer library sends): the kept body matches it.
    compact = json.dumps(json.loads(original), separators=(",", ":")).encode()
    assert record.outcome["requestOmitted"] == {"bytes": len(compact), "sha256": hashlib.sha256(compact).hexdigest()}


def test_a_long_outcome_is_split_over_properties_and_read_back_whole(table):
    long_message = "x" * (TEXT_PART_CHARS * 2 + 5)
    outcome = outcome_of(pipeline(table, forbidden()), body(), Delivery("m-1", 5, ENQUEUED))
    assert outcome.error is not None
    longer = outcome.model_copy(update={"error": outcome.error.model_copy(update={"message": long_message})})
    audit_trail(table).record(Result(longer, longer.to_json()), body(), ENQUEUED)
    (main,) = [row for row in rows_of(table) if str(row["RowKey"]).startswith("m|")]
    assert main["outcomeParts"] == 3
    (found,) = history(table, DAY)
    assert full_record(table, found).outcome["error"]["message"] == long_message


def test_keys_survive_whatever_strings_a_rejected_message_named(table):
    odd = "a/b#c?d\\e\u0001f|g%h"
    document = json.dumps({"correlationId": "ok-1", "deviceConfigurationId": odd}).encode()
    outcome = outcome_of(pipeline(table), document, Delivery("m-1", 1, ENQUEUED))
    assert outcome.status is Status.REJECTED
    (found,) = history(table, HistoryQuery(since=DAY.since, until=DAY.until, device_configuration_id=odd))
    assert found.device_configuration_id == odd


def test_an_outcome_goes_out_even_when_its_audit_row_cannot_be_written(azurite):
    """Never lose the outcome: the failure is logged and counted instead (the audit alert watches the count)."""
    with capture() as otel:
        missing = TableRows.from_connection_string(azurite.connection_string, "nosuchtable" + uuid.uuid4().hex[:8])
        audited = CertStatePipeline(
            graph=RecordingGraph(), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
            max_dequeue_count=5, audit=AuditTrail(missing, wait_seconds=10), telemetry=otel.telemetry,
        )  # fmt: skip
        outcome = outcome_of(audited, body(), Delivery("m-1", 1, ENQUEUED))
        assert outcome.status is Status.SUCCEEDED
        assert otel.total("certstate.audit.failures") == 1
        assert [e["event"] for e in otel.log_events()] == ["auditFailed"]  # the succeeded line is INFO, not exported


def test_purge_deletes_the_days_past_the_retention(table):
    now = ENQUEUED
    audited = pipeline(table)
    for n, age in enumerate([0, 29, 31, 400]):
        audited.handle(body(), Delivery(f"m-{n}", 1, now - timedelta(days=age)))
    deleted = audit_trail(table, clock=lambda: now).purge(retention_days=30)
    assert deleted == 8  # two messages x four rows
    left = history(table, HistoryQuery(since=now - timedelta(days=500), until=now))
    assert sorted(s.message_id for s in left) == ["m-0", "m-1"]


def storage_settings(table_endpoint: str) -> Settings:
    """The function's settings for an account whose table service is at `table_endpoint`."""
    connection = f"AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};TableEndpoint={table_endpoint};"
    return Settings(AzureWebJobsStorage=connection, AUDIT_WAIT_SECONDS=0.5)


def test_a_missing_table_is_created_by_the_first_write_not_when_the_pipeline_is_built(azurite):
    """Azurite starts empty: the first outcome creates the table, and building the trail touched nothing."""
    name = "audit" + uuid.uuid4().hex[:12]
    settings = Settings(AzureWebJobsStorage=azurite.connection_string, AUDIT_TABLE_NAME=name)
    trail = build_audit(settings)
    assert trail is not None
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        assert name not in {t.name for t in service.list_tables()}
        audited = CertStatePipeline(
            graph=RecordingGraph(), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
            max_dequeue_count=5, audit=trail,
        )  # fmt: skip
        outcome_of(audited, body(), Delivery("m-1", 1, ENQUEUED))
        (found,) = history(service.get_table_client(name), DAY)
        assert found.message_id == "m-1"
        service.delete_table(name)


def test_building_the_audit_trail_sends_nothing_to_the_table_service():
    with SilentServer() as table_service:
        assert build_audit(storage_settings(table_service.endpoint)) is not None
        time.sleep(0.3)
        assert table_service.connections == 0


def test_a_table_service_that_never_answers_holds_the_outcome_no_longer_than_the_wait():
    """The outcome goes out after AUDIT_WAIT_SECONDS, the failure counted; the write gives up on its own."""
    with SilentServer() as table_service, capture() as otel:
        trail = build_audit(storage_settings(table_service.endpoint))
        audited = CertStatePipeline(
            graph=RecordingGraph(), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
            max_dequeue_count=5, audit=trail, telemetry=otel.telemetry,
        )  # fmt: skip
        started = time.monotonic()
        outcome = outcome_of(audited, body(), Delivery("m-1", 1, ENQUEUED))
        waited = time.monotonic() - started
        assert outcome.status is Status.SUCCEEDED
        assert waited < 3  # the SDK's own read timeout alone is 5 s, its defaults 300 s and ten retries
        assert otel.total("certstate.audit.failures") == 1
        (failed,) = [e for e in otel.log_events() if e["event"] == "auditFailed"]
        assert failed["reason"] == "AuditTimeout"


def test_writes_pending_on_a_stalled_table_are_bounded_and_the_next_outcome_does_not_wait():
    with SilentServer() as table_service:
        settings = storage_settings(table_service.endpoint)
        assert settings.storage.connection_string is not None
        rows = TableRows.from_connection_string(settings.storage.connection_string, "audit")
        stalled = AuditTrail(rows, wait_seconds=0.2, max_pending=1)
        result = result_of(pipeline_without_audit(), body(), Delivery("m-1", 1, ENQUEUED))
        with pytest.raises(AuditTimeout):
            stalled.record(result, body(), ENQUEUED)
        started = time.monotonic()
        with pytest.raises(AuditBacklog):
            stalled.record(result, body(), ENQUEUED)
        assert time.monotonic() - started < 0.2  # refused at once, not after another wait


def pipeline_without_audit() -> CertStatePipeline:
    return CertStatePipeline(
        graph=RecordingGraph(), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5,
    )  # fmt: skip


def test_a_consent_checks_outcome_is_kept_and_found_by_its_tenant(table):
    tenant = "1111bbbb-0000-4000-8000-000000000002"  # served by `directory()`
    audited = CertStatePipeline(
        graph=RecordingGraph(), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5, clock=lambda: ENQUEUED + timedelta(seconds=5),
        audit=AuditTrail(lean_rows(table), wait_seconds=10),
        consent=lambda _: ConsentResult(ConsentState.NOT_CONSENTED, "refused", entra_code="AADSTS65001"),
    )  # fmt: skip
    check = json.dumps({"check": "consent", "tenantId": tenant, "correlationId": "check-1"}).encode()
    outcome = outcome_of(audited, check, Delivery("m-check", 1, ENQUEUED))
    assert (outcome.status, outcome.consent and outcome.consent.entra_code) == (Status.FAILED, "AADSTS65001")
    (found,) = history(table, HistoryQuery(since=DAY.since, until=DAY.until, tenant_id=tenant))
    assert (found.correlation_id, found.status) == ("check-1", "failed")


class GatedRows(TableRows):
    """The table's rows, each transaction held until `gate` opens, and counted; `refuse`: a correlationId refused."""

    def __init__(self, table: TableClient, refuse: str = "") -> None:
        super().__init__(table.url, table.table_name, SharedKey(ACCOUNT_NAME, base64.b64decode(ACCOUNT_KEY)))
        self.gate = threading.Event()
        self.transactions: list[int] = []
        self._refuse = refuse

    def upsert(self, rows, deadline=None):
        self.gate.wait(10)
        self.transactions.append(len(rows))
        if self._refuse and any(f'"correlationId":"{self._refuse}"' in row.properties for row in rows):
            raise TableError(400, "EntityTooLarge")
        super().upsert(rows, deadline)


def record_concurrently(audit: AuditTrail, rows: GatedRows, ids: list[str]) -> dict[str, str]:
    """Record one outcome per id from its own thread while the table is held; what each record call ended in."""
    ended: dict[str, str] = {}

    def record(message_id: str) -> None:
        data = body(correlationId=message_id)
        result = result_of(pipeline_without_audit(), data, Delivery(message_id, 1, ENQUEUED))
        try:
            audit.record(result, data, ENQUEUED)
            ended[message_id] = "kept"
        except Exception as err:
            ended[message_id] = type(err).__name__

    threads = [threading.Thread(target=record, args=(m,)) for m in ids]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    # The first outcome's own thread and four writers hold one each; the others wait in the queue.
    while len(audit._queue) < len(ids) - 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    rows.gate.set()
    for thread in threads:
        thread.join()
    return ended


def test_outcomes_waiting_together_are_written_in_one_transaction_per_partition(table):
    """Group commit: eight outcomes at once take fewer transactions than eight, and every one is kept."""
    rows = GatedRows(table)
    ids = [f"m-{n}" for n in range(8)]
    ended = record_concurrently(AuditTrail(rows, wait_seconds=10), rows, ids)
    assert ended == dict.fromkeys(ids, "kept")
    assert len(rows.transactions) < len(ids)
    assert max(rows.transactions) > 4  # one transaction carried the rows of several outcomes
    assert sorted(s.message_id for s in history(table, DAY)) == sorted(ids)


def test_one_refused_outcome_in_a_shared_transaction_costs_the_others_nothing(table):
    rows = GatedRows(table, refuse="m-7")
    ids = [f"m-{n}" for n in range(8)]
    ended = record_concurrently(AuditTrail(rows, wait_seconds=10), rows, ids)
    assert ended == {**dict.fromkeys(ids, "kept"), "m-7": "TableError"}
    assert sorted(s.message_id for s in history(table, DAY)) == sorted(ids[:7])


def test_a_row_holding_the_multipart_boundary_is_written_as_it_is(table):
    rows = lean_rows(table)
    text = "--batch_certstate_5f0c\r\n--changeset_certstate_5f0c--\r\nHTTP/1.1 204 No Content"
    rows.upsert([entity({"PartitionKey": "p", "RowKey": "r'1", "text": text, "data": b"\x00\xff", "big": 2**40})])
    (found,) = rows_of(table)
    assert (found["RowKey"], found["text"], found["data"]) == ("r'1", text, b"\x00\xff")
    assert getattr(found["big"], "value", None) == 2**40  # an Edm.Int64 comes back as an EntityProperty


def test_rows_a_table_answers_after_the_wait_are_still_written_and_count_as_pending_until_they_are():
    """The outcome goes out at the wait; the rows go on to a writer, and the bound on pending writes holds them."""
    server = SlowServer(delay=1.0)
    try:
        audit = AuditTrail(TableRows(server.endpoint, "audit", SharedKey("acct", b"key")), wait_seconds=0.3,
                           max_pending=1)  # fmt: skip
        result = result_of(pipeline_without_audit(), body(), Delivery("m-1", 1, ENQUEUED))
        started = time.monotonic()
        with pytest.raises(AuditTimeout):
            audit.record(result, body(), ENQUEUED)
        assert time.monotonic() - started < 1.0
        with pytest.raises(AuditBacklog):  # still being written
            audit.record(result, body(), ENQUEUED)
        server.delay = 0.0
        deadline = time.monotonic() + 5
        while True:  # once the table has answered the writer, the next outcome is written at once
            try:
                audit.record(result, body(), ENQUEUED)
                break
            except AuditBacklog:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert len(server.bodies) == 3  # cut short at the wait, sent again by a writer, and the next one
        assert all(b"RowKey='m%7Cm-1')" in sent for sent in server.bodies)
    finally:
        server.close()
