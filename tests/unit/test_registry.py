"""The tenant registry: who is served, active or paused, how soon a change applies, and an unreadable table."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode, MessageRejected, TransientError
from shared.contract.tenants import TenantEntry, budget_with_reserve, from_entity, to_entity
from shared.graph.pacing import WritePacer
from shared.graph.tenancy import TenantDirectory
from shared.pipeline import CertStatePipeline, Delivery
from shared.registry import Served, TenantRegistry
from shared.settings import Settings
from shared.wiring import build_served
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.pipeline_fakes import NOW, NamedCredential, RecordingGraph, body

A = "a0000000-0000-4000-8000-00000000000a"
B = "b0000000-0000-4000-8000-00000000000b"
STATIC = "5000aaaa-0000-4000-8000-000000000005"


class Table:
    """The registry table: rows, a read counter, and a switch that makes reads fail."""

    def __init__(self, *entries: TenantEntry) -> None:
        self.rows: list[dict[str, Any]] = [to_entity(e) for e in entries]
        self.reads = 0
        self.failing = False

    def read(self) -> list[dict[str, Any]]:
        self.reads += 1
        if self.failing:
            raise ConnectionError("table unreachable")
        return list(self.rows)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def registry(table: Table, clock: Clock, refresh: float = 30.0) -> TenantRegistry:
    return TenantRegistry(table.read, refresh_seconds=refresh, wait_seconds=1.0, clock=clock)


def directory(served: Served, built: list[str]) -> TenantDirectory:
    def credential(tenant_id: str) -> Any:
        built.append(tenant_id)
        return NamedCredential(tenant_id)

    return TenantDirectory(
        home_credential=NamedCredential("home"), home_tenant_id=None, served=served,
        cross_tenant_credential=credential, pacer=lambda _: WritePacer(10, 1.0),
    )  # fmt: skip


def test_a_tenant_added_to_the_table_is_served_after_the_refresh_interval_and_not_before():
    table, clock = Table(TenantEntry(A, "Contoso")), Clock()
    served = Served((), registry(table, clock, refresh=30), paused_recheck_seconds=30)
    assert served.lookup(A) == TenantEntry(A, "Contoso", changed_at=table.rows[0]["changedAt"])
    table.rows.append(to_entity(TenantEntry(B, "Fabrikam")))
    clock.now = 29.9
    assert served.lookup(B) is None  # within the interval: the last read
    clock.now = 30.0
    assert served.lookup(B) is not None
    assert table.reads == 2  # one read per interval, however many lookups


def test_a_removed_tenant_is_refused_and_a_paused_one_waits_without_a_credential_being_built():
    table, clock, built = Table(TenantEntry(A, "Contoso"), TenantEntry(B, "Fabrikam")), Clock(), list[str]()
    tenants = directory(Served((), registry(table, clock, 10), paused_recheck_seconds=10, jitter=lambda: 0.5), built)
    tenants.tenant(A)
    table.rows = [to_entity(TenantEntry(B, "Fabrikam", paused=True))]
    clock.now = 10
    with pytest.raises(MessageRejected) as rejected:
        tenants.tenant(A)  # built before, removed now: refused all the same
    assert rejected.value.code is ErrorCode.TENANT_NOT_ALLOWED
    assert "not in the tenant registry" in rejected.value.details[0].message
    with pytest.raises(DeferralRequested) as waiting:
        tenants.tenant(B)
    assert (waiting.value.cause, waiting.value.reason, waiting.value.delay_seconds) == (
        ErrorCode.TENANT_PAUSED, DeferralReason.TENANT_PAUSED, 15.0,
    )  # fmt: skip
    assert tenants.tenant(B, paused_ok=True).tenant_id == B  # a consent check goes through
    assert built == [A, B]
    table.rows = [to_entity(TenantEntry(B, "Fabrikam", paused=False))]
    clock.now = 20
    assert tenants.tenant(B).tenant_id == B  # resumed


def test_an_unreadable_table_serves_the_last_read_and_reads_again_no_more_than_every_five_seconds():
    table, clock = Table(TenantEntry(A)), Clock()
    reg = registry(table, clock, refresh=30)
    assert reg.lookup(A) is not None
    table.failing = True
    clock.now = 31
    assert reg.lookup(A) is not None  # the last read serves
    clock.now = 33
    assert reg.lookup(A) is not None
    assert table.reads == 2
    clock.now = 36.5
    reg.lookup(A)
    assert table.reads == 3


def test_before_any_read_succeeded_a_registry_tenant_is_handed_back_and_an_unknown_one_is_never_served():
    table, clock, built = Table(TenantEntry(A)), Clock(), list[str]()
    table.failing = True
    tenants = directory(Served((STATIC,), registry(table, clock), paused_recheck_seconds=30), built)
    with pytest.raises(TransientError) as unknown:
        tenants.tenant(A)
    assert unknown.value.code is ErrorCode.REGISTRY_UNAVAILABLE
    assert tenants.tenant(STATIC).tenant_id == STATIC  # SERVED_TENANT_IDS needs no table
    assert built == [STATIC]


def test_a_registry_row_wins_over_served_tenant_ids_for_its_tenant():
    table, clock = Table(TenantEntry(STATIC, "Static Co", write_reserve=40, paused=True)), Clock()
    served = Served((STATIC,), registry(table, clock), paused_recheck_seconds=30)
    entry = served.lookup(STATIC)
    assert entry is not None
    assert (entry.paused, entry.write_reserve, served.display_name(STATIC)) == (True, 40, "Static Co")


def test_rows_that_do_not_read_as_entries_are_skipped_not_served():
    table, clock = Table(TenantEntry(A, "Contoso")), Clock()
    table.rows += [
        {"PartitionKey": "tenant", "RowKey": "not-a-guid", "displayName": "x"},
        {"PartitionKey": "tenant", "RowKey": B, "writeReserve": "lots"},
        {"PartitionKey": "tenant", "RowKey": B.replace("b", "c"), "paused": "yes"},
    ]
    reg = registry(table, clock)
    assert reg.lookup(A) is not None
    assert reg.lookup(B) is None
    assert len(reg.entries() or {}) == 1


def test_concurrent_lookups_read_once_and_wait_only_for_the_first_read():
    started, release = threading.Event(), threading.Event()
    reads: list[int] = []

    def slow_read() -> list[dict[str, Any]]:
        reads.append(1)
        started.set()
        release.wait(5)
        return [to_entity(TenantEntry(A))]

    clock = Clock()
    reg = TenantRegistry(slow_read, refresh_seconds=30, wait_seconds=5, clock=clock)
    answers: list[object] = []
    threads = [threading.Thread(target=lambda: answers.append(reg.lookup(A))) for _ in range(8)]
    for thread in threads:
        thread.start()
    started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(reads) == 1
    assert all(isinstance(a, TenantEntry) for a in answers)


def test_entries_round_trip_and_the_reserve_scales_the_budget():
    entry = TenantEntry(A, "Contoso", 50, True, datetime(2026, 12, 7, tzinfo=UTC))
    assert from_entity(to_entity(entry)) == entry
    assert budget_with_reserve(49, 0) == 49
    assert budget_with_reserve(49, 100) == 24
    assert budget_with_reserve(49, 199) == 1


def test_wiring_reads_no_registry_without_the_multitenant_app_and_nothing_while_building():
    storage = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert build_served(Settings.model_validate(storage)).registry is None
    with_app = Settings.model_validate({**storage, "MULTITENANT_APP_CLIENT_ID": A, "REGISTRY_REFRESH_SECONDS": "5"})
    served = build_served(with_app)
    assert served.registry is not None
    assert served.registry.entries() is None  # built, not read
    no_table = Settings.model_validate({**storage, "MULTITENANT_APP_CLIENT_ID": A, "REGISTRY_TABLE_NAME": ""})
    assert build_served(no_table).registry is None


def test_through_the_pipeline_a_paused_tenants_message_is_deferred_then_fails_tenant_paused_and_never_patched():
    graph, store, sent = RecordingGraph(), MemoryDeferrals(), list[tuple[str, int]]()
    table, clock = Table(TenantEntry(A, "Contoso", paused=True)), Clock()
    served = Served((), registry(table, clock), paused_recheck_seconds=30, jitter=lambda: 0)
    now = [NOW]
    pipeline = CertStatePipeline(
        graph=graph, tenants=directory(served, []), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5, requeue=lambda text, delay: sent.append((text, delay)), deferrals=store,
        max_deferral_seconds=60, clock=lambda: now[0],
    )  # fmt: skip
    assert pipeline.handle(body(tenantId=A), Delivery("m-1", 1, NOW)) is None  # deferred: no outcome yet
    assert [delay for _, delay in sent] == [30]
    now[0] = NOW + timedelta(seconds=45)
    result = pipeline.handle(sent[0][0].encode(), Delivery("copy-1", 1, now[0]))
    assert result is not None
    assert (result.outcome.status.value, result.outcome.error.code if result.outcome.error else None) == (
        "failed", "tenantPaused",
    )  # fmt: skip
    assert result.outcome.message_id == "m-1"
    assert graph.requests == []


def test_through_the_pipeline_an_unread_registry_hands_the_message_back_then_fails_registry_unavailable():
    table, clock = Table(TenantEntry(A)), Clock()
    table.failing = True
    pipeline = CertStatePipeline(
        graph=RecordingGraph(), tenants=directory(Served((), registry(table, clock), paused_recheck_seconds=30), []),
        graph_base_url="https://graph.microsoft.com/beta", max_dequeue_count=2, clock=lambda: NOW,
    )  # fmt: skip
    with pytest.raises(TransientError):
        pipeline.handle(body(tenantId=A), Delivery("m-1", 1))
    clock.now = 10  # past the 5 s between failed reads: read again, fail again
    last = pipeline.handle(body(tenantId=A), Delivery("m-1", 2))
    assert last is not None
    assert last.outcome.error is not None
    assert (last.outcome.status.value, last.outcome.error.code) == ("failed", "registryUnavailable")
    assert table.reads == 2
