"""The composition root: one pipeline per process, built from `Settings` and host.json.

Everything costly or stateful (credentials and their token caches, HTTP session and its
connection pool, write pacers) is created here once and shared by every invocation; the
per-tenant ones on the first message for their tenant (shared/graph/tenancy.py).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import requests
from azure.core.credentials import TokenCredential

from shared.contract.limits import POISON_SUFFIX, outcome_budget
from shared.contract.tenants import PARTITION, budget_with_reserve
from shared.deferral_policy import Requeue
from shared.graph.breaker import CircuitBreaker
from shared.graph.client import ClientLimits, GraphClient
from shared.graph.consent import ReadLimits, check_consent
from shared.graph.pacing import Pacer, WritePacer
from shared.graph.tenancy import ExchangeAssertion, TenantDirectory, authority_for, exchange_scope
from shared.graph.transport import WatchedAdapter
from shared.host_config import QueueOptions, queue_options
from shared.identity import ENTRA_TRANSPORT, IDENTITY_TRANSPORT
from shared.pipeline import CertStatePipeline
from shared.registry import Served, TenantRegistry
from shared.settings import CredentialMode, Settings, load_settings
from shared.storage import STORAGE_OPERATION_SECONDS, QueueSender
from shared.telemetry import Telemetry, configure_azure_monitor_once

if TYPE_CHECKING:  # the storage SDKs load on first use: importing the app stays cheap (Flex's 30 s start)
    from azure.data.tables import TableClient

    from shared.audit import AuditTrail
    from shared.deferrals import DeferralTable
    from shared.graph.budget import BudgetStore
    from shared.operations import Operations
    from shared.tables import TableRows


def build_credential(settings: Settings) -> TokenCredential:
    """The managed identity (system- or user-assigned), or DefaultAzureCredential for developers."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential  # noqa: PLC0415 - cold start

    # azure-identity logs every cached get_token at INFO (two lines per message in the host's logs).
    logging.getLogger("azure.identity").setLevel(logging.WARNING)
    if settings.CREDENTIAL_MODE is CredentialMode.DEFAULT:
        return DefaultAzureCredential(
            managed_identity_client_id=settings.MANAGED_IDENTITY_CLIENT_ID,
            exclude_interactive_browser_credential=True,
            **IDENTITY_TRANSPORT,
        )
    return ManagedIdentityCredential(client_id=settings.MANAGED_IDENTITY_CLIENT_ID, **IDENTITY_TRANSPORT)


def build_budget_store(settings: Settings) -> BudgetStore | None:
    """The shared write budgets' table, when the function has its storage account; else None.

    Nothing is called on storage here. The rows go through `shared.tables` (one bounded request per
    call, never sent twice); with a connection string (Azurite) the first row creates the table;
    deployed, infra creates it and the identity may only read and write rows of that one table.
    """
    storage, name = settings.storage, settings.GRAPH_PACING_TABLE_NAME
    if not (name and storage.configured and storage.has_tables):
        return None
    from shared.graph.budget import READ_TIMEOUT_SECONDS, TableBudgetStore  # noqa: PLC0415 - cold start

    rows = table_rows(settings, name, read_seconds=READ_TIMEOUT_SECONDS, retry=False)
    return TableBudgetStore(rows, create_missing=bool(storage.connection_string))


def table_rows(settings: Settings, name: str, **options: Any) -> TableRows:  # noqa: ANN401
    """`shared.tables`' client of one table of the function's storage account (`has_tables`), nothing sent yet.

    Signed with the connection string's account key (Azurite), or the identity's storage token deployed.
    """
    from shared.tables import BearerToken, TableRows  # noqa: PLC0415 - cold start

    storage = settings.storage
    if storage.connection_string:
        return TableRows.from_connection_string(storage.connection_string, name, **options)
    assert storage.table_service_uri is not None  # has_tables
    return TableRows(storage.table_service_uri, name, BearerToken(storage.credential()), **options)


def build_pacer(
    settings: Settings,
    served: Served,
    store: BudgetStore | None,
    instance: str,
    on_wait: Callable[[str, float], None],
) -> Callable[[str | None], Pacer]:
    """Each tenant's pacer: its share of the deployment's budget from the store, or the split without one."""
    from shared.graph.budget import SharedPacer  # noqa: PLC0415 - cold start
    from shared.settings import HOME  # noqa: PLC0415

    window = settings.GRAPH_WRITE_WINDOW_SECONDS

    def pacer(tenant_id: str | None) -> Pacer:
        """The tenant's budget, scaled to its registry reserve (read when the tenant is first built)."""
        entry = served.lookup(tenant_id) if tenant_id is not None else None
        budget = settings.write_budget(tenant_id)
        if entry is not None and entry.write_reserve:
            budget = budget_with_reserve(budget, entry.write_reserve)
        split = settings.split_of(budget)
        if store is None:
            return WritePacer(split, window, on_wait=on_wait)
        return SharedPacer(tenant_id or settings.HOME_TENANT_ID or HOME, store, budget, window, instance=instance,
                           fallback_budget=split, instances=settings.GRAPH_PACING_MAX_INSTANCES,
                           on_wait=on_wait)  # fmt: skip

    return pacer


def build_tenants(
    settings: Settings,
    home_credential: TokenCredential,
    on_wait: Callable[[str, float], None] = lambda reason, seconds: None,
    served: Served | None = None,
    store: BudgetStore | None = None,
) -> TenantDirectory:
    """The served tenants: home through `home_credential`, the others through the multi-tenant app.

    The managed identity's token for the exchange audience is the assertion of every tenant's
    `ClientAssertionCredential` (azure-identity's own class, which posts to
    `<authority>/<tenant>/oauth2/v2.0/token` without MSAL's instance discovery).
    """
    authority = authority_for(settings.GRAPH_BASE_URL, settings.AZURE_AUTHORITY_HOST)
    assertion = ExchangeAssertion(home_credential, exchange_scope(authority))

    def cross_tenant_credential(tenant_id: str) -> TokenCredential:
        from azure.identity import ClientAssertionCredential  # noqa: PLC0415 - cold start

        assert settings.MULTITENANT_APP_CLIENT_ID is not None  # Settings refuses served tenants without it
        return ClientAssertionCredential(
            tenant_id, settings.MULTITENANT_APP_CLIENT_ID, assertion, authority=authority, **ENTRA_TRANSPORT
        )

    served = served or build_served(settings)
    return TenantDirectory(
        home_credential=home_credential,
        home_tenant_id=settings.HOME_TENANT_ID,
        served=served,
        cross_tenant_credential=cross_tenant_credential,
        pacer=build_pacer(settings, served, store, uuid.uuid4().hex[:16], on_wait),
    )


def build_served(settings: Settings) -> Served:
    """SERVED_TENANT_IDS and the tenant registry (if the deployment has one); nothing is read here.

    The registry is read with the function's own storage connection (read-only role deployed), one
    bounded call per read with no SDK retry; the first lookup waits for it at most one storage operation.
    """
    registry = None
    if settings.has_registry:
        storage, name = settings.storage, settings.REGISTRY_TABLE_NAME
        quiet_storage_logs()
        table: list[Any] = []  # the client, built on the first read

        def read() -> list[Any]:
            from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - cold start

            if not table:
                table.append(storage.table_service().get_table_client(name))
            try:
                return list(table[0].query_entities(f"PartitionKey eq '{PARTITION}'", retry_total=0))
            except ResourceNotFoundError:  # no table yet (Azurite before the first `tenants add`): no rows
                return []

        registry = TenantRegistry(
            read, refresh_seconds=settings.REGISTRY_REFRESH_SECONDS, wait_seconds=STORAGE_OPERATION_SECONDS
        )
    return Served(settings.SERVED_TENANT_IDS, registry, paused_recheck_seconds=settings.REGISTRY_REFRESH_SECONDS)


def build_session(pool_size: int, base_url: str) -> requests.Session:
    """One keep-alive pool sized to the host's concurrency; retries are ours, not urllib3's.

    The adapter's connections report their sockets to the Graph PATCH in progress, which bounds
    the whole answer in time (`shared.graph.transport`).

    The environment (proxy variables, CA bundle) is read here once for Graph's origin: with
    `trust_env` on, requests re-reads it and ~/.netrc on every request, about 40 % of the CPU
    per message (docs/benchmarks.md). A ~/.netrc would replace the bearer token anyway.
    """
    session = requests.Session()
    adapter = WatchedAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "certstate/1 (+azure-functions; python)"
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    if bundle := os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        session.verify = bundle
    session.trust_env = False
    return session


def build_audit(settings: Settings) -> AuditTrail | None:
    """The audit trail, when the function has its storage account (and a table name); else None.

    Nothing is called on storage here: building the pipeline never waits on the account. With a
    connection string (Azurite) the first write creates the table if it is missing; deployed, infra
    creates it, and the identity may only write rows of that one table (docs/operations.md, "Audit trail").
    Rows go out through `shared.tables` (a few string joins per outcome); the storage SDK's client of the
    table is built when the daily purge first runs.
    """
    from shared.audit import AuditTrail  # noqa: PLC0415 - cold start

    storage, name = settings.storage, settings.AUDIT_TABLE_NAME
    if not (name and storage.configured and storage.has_tables):
        return None  # e.g. a queue-only Azurite: the SDK would otherwise guess a table host in Azure
    rows = table_rows(settings, name)

    def purge_table() -> TableClient:
        quiet_storage_logs()
        return storage.table_service().get_table_client(name)

    return AuditTrail(
        rows, wait_seconds=settings.AUDIT_WAIT_SECONDS, create_missing=bool(storage.connection_string),
        purge_table=cache(purge_table),
    )  # fmt: skip


def build_deferrals(settings: Settings, on_failure: Callable[[str], None] | None = None) -> DeferralTable | None:
    """The deferral records, kept in the audit table; None without one, and then nothing is deferred.

    Nothing is called on storage here: the first deferral opens the first connection. `on_failure`: told
    of each request the table service failed (`TableRows`).
    """
    storage, name = settings.storage, settings.AUDIT_TABLE_NAME
    if not (name and storage.configured and storage.has_tables):
        return None
    from shared.deferrals import DeferralTable  # noqa: PLC0415 - cold start

    rows = table_rows(settings, name, retry=False, on_failure=on_failure)
    return DeferralTable(rows, create_missing=bool(storage.connection_string))


def quiet_storage_logs() -> None:
    """The storage SDK logs every request and its headers at INFO: CPU per message, and noise in the logs."""
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


def build_pipeline(
    settings: Settings,
    options: QueueOptions,
    credential: TokenCredential | None = None,
    *,
    telemetry: Telemetry | None = None,
    audit: AuditTrail | None = None,
    requeue: Requeue | None = None,
) -> CertStatePipeline:
    """Wire the production pipeline; tests pass their own settings and, if they like, the rest.

    `requeue` stands in for the input queue a deferred copy goes to (a benchmark's queue in memory).
    """
    telemetry = telemetry or Telemetry()
    breaker = CircuitBreaker(
        threshold=settings.BREAKER_FAILURE_THRESHOLD,
        cooldown_seconds=settings.BREAKER_COOLDOWN_SECONDS,
        max_cooldown_seconds=settings.BREAKER_MAX_COOLDOWN_SECONDS,
        probe_timeout_seconds=settings.GRAPH_CONNECT_TIMEOUT_SECONDS + settings.GRAPH_READ_TIMEOUT_SECONDS,
    )
    telemetry.watch_breaker(lambda: breaker.is_open)
    session = build_session(options.max_concurrency, settings.GRAPH_BASE_URL)
    client = GraphClient(
        session=session,
        scope=settings.graph_scope,
        breaker=breaker,
        limits=ClientLimits(
            connect_timeout=settings.GRAPH_CONNECT_TIMEOUT_SECONDS,
            read_timeout=settings.GRAPH_READ_TIMEOUT_SECONDS,
            max_attempts=settings.GRAPH_MAX_ATTEMPTS,
            max_wait_seconds=settings.GRAPH_MAX_WAIT_SECONDS,
            slot_wait_seconds=settings.GRAPH_SLOT_WAIT_SECONDS if settings.serves_other_tenants else None,
            # Fewer than the invocations below which the host fetches: long waits alone never stop it reading.
            long_waits=max(1, options.new_batch_threshold - 1) if settings.serves_other_tenants else None,
        ),
        telemetry=telemetry,
    )
    store = build_budget_store(settings)
    failed = None
    if store is not None:  # its module is loaded with the store
        from shared.graph.budget import lookout_of  # noqa: PLC0415

        # A copy waits on its deferral record before it paces: a table outage that only the records met is
        # one the pacers here must leave room after, as instances whose pacers met it are on their split.
        failed = lookout_of(store).failed_elsewhere
    deferrals = build_deferrals(settings, failed)
    input_queue = QueueSender(settings.storage, settings.INPUT_QUEUE_NAME)
    served = build_served(settings)
    read_limits = ReadLimits(
        gate_seconds=settings.GRAPH_MAX_WAIT_SECONDS,
        connect_timeout=settings.GRAPH_CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.GRAPH_READ_TIMEOUT_SECONDS,
    )
    return CertStatePipeline(
        graph=client,
        tenants=build_tenants(
            settings,
            credential or build_credential(settings),
            telemetry.waited,
            served,
            store,
        ),
        consent=lambda tenant: check_consent(
            tenant,
            session=session,
            scope=settings.graph_scope,
            graph_base_url=settings.GRAPH_BASE_URL,
            limits=read_limits,
        ),
        tenant_name=served.display_name,
        graph_base_url=settings.GRAPH_BASE_URL,
        max_dequeue_count=options.max_dequeue_count,
        requeue=(requeue or input_queue.send) if deferrals else None,
        deferrals=deferrals,
        max_deferral_seconds=settings.DEFERRAL_MAX_SECONDS,
        outcome_budget=outcome_budget(options.message_encoding),
        telemetry=telemetry,
        audit=audit,
    )


_pipeline_lock = threading.Lock()


def pipeline() -> CertStatePipeline:
    """The process's pipeline, built on first use so importing the app stays cheap.

    Locked because the host starts several invocations at once: without it, each of the first
    ones would build its own credential and ask the identity endpoint for its own token.
    """
    with _pipeline_lock:
        return _build_once()


def reset_pipeline() -> None:
    """Forget the pipeline and the settings (for the local stack, which changes app settings)."""
    with _pipeline_lock:
        for cached in (_build_once, _operations_once, _audit):
            cached.cache_clear()
        load_settings.cache_clear()


@cache
def telemetry() -> Telemetry:
    """The process's instruments, after the Azure Monitor exporters are set up (if they are configured)."""
    configure_azure_monitor_once(load_settings().APPLICATIONINSIGHTS_CONNECTION_STRING)
    return Telemetry()


@cache
def _audit() -> AuditTrail | None:
    return build_audit(load_settings())


@cache
def _build_once() -> CertStatePipeline:
    return build_pipeline(load_settings(), queue_options(), telemetry=telemetry(), audit=_audit())


def operations() -> Operations:
    """The timer functions' work, built once per process like the pipeline."""
    with _pipeline_lock:
        return _operations_once()


@cache
def _operations_once() -> Operations:
    from shared.operations import Operations  # noqa: PLC0415 - cold start

    settings = load_settings()
    quiet_storage_logs()
    names = {
        "input": settings.INPUT_QUEUE_NAME,
        "poison": settings.INPUT_QUEUE_NAME + POISON_SUFFIX,
        "result": settings.RESULT_QUEUE_NAME,
    }
    return Operations(
        queues=settings.storage.queue_service(),
        queue_names=names,
        telemetry=telemetry(),
        audit=_audit(),
        retention_days=settings.AUDIT_RETENTION_DAYS,
    )
