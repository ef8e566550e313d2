"""The shared pacing table as wired (`TableBudgetStore` on shared/tables.py) against Azurite's table service.

Every instance of a deployment claims slots with conditional writes on the same rows: a claim on a row
another instance changed must lose (never overwrite), a look must return every row in use with ETags a
claim can write on, and a stalled table must cost one bounded request, never a second one.
"""

from __future__ import annotations

import time
import uuid

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from devstack.azurite import Azurite
from shared.graph.budget import PARTITION, READ_TIMEOUT_SECONDS, BudgetRow, Contended, TableBudgetStore
from shared.settings import Settings
from shared.wiring import build_budget_store
from tests.support.silent import SilentServer

NOW = 1_796_000_000.0


def store_on(azurite: Azurite, name: str) -> TableBudgetStore:
    settings = Settings(AzureWebJobsStorage=azurite.connection_string, GRAPH_PACING_TABLE_NAME=name)
    store = build_budget_store(settings)
    assert isinstance(store, TableBudgetStore)
    return store


@pytest.fixture
def name(azurite: Azurite):
    table = "pacing" + uuid.uuid4().hex[:12]
    yield table
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        service.delete_table(table)


def test_the_first_claim_creates_the_table_and_a_read_returns_the_row_with_its_etag(azurite, name):
    store = store_on(azurite, name)
    assert store.read("home") == BudgetRow()  # no table yet: no row, nothing created by reading
    row = BudgetRow(next_slot=NOW + 2.5, gate_until=NOW + 1, last_by="i0", shared_until=NOW + 12.25,
                    lean_until=NOW + 30, lean_from=NOW - 3, claimed_at=NOW)  # fmt: skip
    etag = store.write("home", row, None)
    assert etag
    assert store.read("home") == BudgetRow(
        next_slot=NOW + 2.5, gate_until=NOW + 1, last_by="i0", shared_until=NOW + 12.25, return_at=0.0,
        lean_until=NOW + 30, lean_from=NOW - 3, claimed_at=NOW, etag=etag,
    )  # fmt: skip


def test_a_claim_on_a_row_another_instance_changed_loses_and_leaves_the_others_claim(azurite, name):
    store, other = store_on(azurite, name), store_on(azurite, name)
    seen = store.write("t1", BudgetRow(next_slot=NOW, last_by="i0"), None)
    with pytest.raises(Contended):
        other.write("t1", BudgetRow(next_slot=NOW + 9, last_by="i1"), None)  # created first by i0
    newer = other.write("t1", BudgetRow(next_slot=NOW + 1, last_by="i1"), seen)
    with pytest.raises(Contended):
        store.write("t1", BudgetRow(next_slot=NOW + 5, last_by="i0"), seen)  # i1 wrote since
    assert store.read("t1") == BudgetRow(next_slot=NOW + 1, last_by="i1", gate_until=0.0, shared_until=0.0,
                                         return_at=0.0, lean_until=0.0, lean_from=0.0, claimed_at=0.0,
                                         etag=newer)  # fmt: skip
    assert store.write("t1", BudgetRow(next_slot=NOW + 2, last_by="i0"), newer) != newer


def test_a_claim_on_a_row_deleted_since_loses_as_to_another_instance_and_the_next_creates_it(azurite, name):
    store = store_on(azurite, name)
    seen = store.write("t1", BudgetRow(next_slot=NOW, last_by="i0"), None)
    with TableClient.from_connection_string(azurite.connection_string, name) as table:
        table.delete_entity(PARTITION, "t1")  # an operator cleared the table
    with pytest.raises(Contended):  # the row is not as last seen: a race lost, not a store failure
        store.write("t1", BudgetRow(next_slot=NOW + 1, last_by="i0"), seen)
    assert store.read("t1") == BudgetRow()
    assert store.write("t1", BudgetRow(next_slot=NOW + 2, last_by="i0"), None)


def test_a_look_returns_every_row_in_use_with_etags_a_claim_can_write_on(azurite, name):
    store = store_on(azurite, name)
    store.write("gated", BudgetRow(next_slot=NOW - 60, gate_until=NOW + 3), None)
    store.write("claimed", BudgetRow(next_slot=NOW + 0.5), None)
    store.write("idle", BudgetRow(next_slot=NOW - 60, gate_until=NOW - 30), None)
    active = store.read_active(NOW)
    assert set(active) == {"gated", "claimed"}
    assert active["gated"].gate_until == NOW + 3
    store.write("claimed", BudgetRow(next_slot=NOW + 2), active["claimed"].etag)  # the look's ETag is current


def test_a_look_reads_every_page_of_the_partition(azurite, name):
    with TableClient.from_connection_string(azurite.connection_string, name) as table:
        table.create_table()
        rows = [{"PartitionKey": PARTITION, "RowKey": f"t{i:04}", "nextSlot": NOW + 1.0} for i in range(1003)]
        for start in range(0, len(rows), 100):
            table.submit_transaction([("create", row) for row in rows[start : start + 100]])
    assert len(store_on(azurite, name).read_active(NOW)) == 1003  # Azurite answers 1,000 rows a page


def test_rows_the_storage_sdk_wrote_are_read_and_claimed_on(azurite, name):
    """Instances of two releases share the table during a deployment: rows of either are the same rows."""
    with TableClient.from_connection_string(azurite.connection_string, name) as table:
        table.create_table()
        written = table.create_entity({"PartitionKey": PARTITION, "RowKey": "t", "nextSlot": NOW + 1.0,
                                       "gateUntil": 0.0, "lastBy": "old", "sharedUntil": 0.0, "returnAt": 0.0,
                                       "leanUntil": 0.0})  # fmt: skip
        store = store_on(azurite, name)
        assert store.read("t") == BudgetRow(next_slot=NOW + 1.0, gate_until=0.0, last_by="old", shared_until=0.0,
                                            return_at=0.0, lean_until=0.0, etag=written["etag"])  # fmt: skip
        etag = store.write("t", BudgetRow(next_slot=NOW + 2.0, last_by="new"), written["etag"])
        back = table.get_entity(PARTITION, "t")
        assert (back["nextSlot"], back["lastBy"], back.metadata["etag"]) == (NOW + 2.0, "new", etag)
        table.update_entity(back, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(Contended):
        store.write("t", BudgetRow(next_slot=NOW + 3.0, last_by="new"), etag)  # the SDK's write came first


def test_a_table_service_that_never_answers_costs_one_bounded_request():
    """A conditional write is never sent twice: a retry after a timeout could meet its own ETag."""
    with SilentServer() as table_service:
        connection_string = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"TableEndpoint={table_service.endpoint}"
        )
        store = build_budget_store(Settings(AzureWebJobsStorage=connection_string, GRAPH_PACING_TABLE_NAME="pacing"))
        assert store is not None
        assert table_service.connections == 0  # building it sends nothing
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            store.write("t", BudgetRow(next_slot=NOW), "W/\"datetime'2026-12-07T00%3A00%3A00Z'\"")
        assert READ_TIMEOUT_SECONDS - 0.1 <= time.monotonic() - started < READ_TIMEOUT_SECONDS + 1.5
        assert table_service.connections == 1
