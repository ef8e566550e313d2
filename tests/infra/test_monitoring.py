"""The alerts and the workbook read what the code emits, and docs/operations.md shows the same KQL.

What is emitted is not listed by hand: the pipeline, the Graph client and the timers run through
the cases an operator would see (success, 429, a dropped connection, 403, a retry, a deferral, a
rejected message, an audit write that fails, queue depths), with the OpenTelemetry SDK's in-memory
exporters, and the metric names and dimensions they produced are what the queries may name.
"""

from __future__ import annotations

import json
import re
import secrets
from functools import cache
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.storage.queue import QueueServiceClient

from devstack.azurite import Azurite
from devstack.graph_simulator import GraphSimulator
from devstack.identity_emulator import IdentityEmulator
from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode
from shared.graph.breaker import CircuitBreaker
from shared.graph.client import ClientLimits, GraphClient
from shared.graph.pacing import WritePacer
from shared.operations import Operations
from shared.pipeline import CertStatePipeline, Delivery
from tests.infra.bicep import INFRA, REPO, text
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.otel import capture
from tests.support.pipeline_fakes import SEEDED_MESSAGE as MESSAGE
from tests.support.pipeline_fakes import RecordingGraph, body, directory, home_only

WORKBOOK = INFRA / "monitoring" / "workbook.json"
DOCS = REPO / "docs" / "operations.md"


def workbook_queries() -> dict[str, str]:
    workbook = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    return {item["name"]: item["content"]["query"] for item in workbook["items"] if item["type"] == 3}


def alert_queries() -> dict[str, str]:
    return {
        name: query.strip()
        for name, query in re.findall(r"var (\w+Query) = '''\n(.*?)'''", text("modules/alerts.bicep"), re.S)
    }


def documented_queries() -> dict[str, str]:
    return {
        name: query.strip()
        for name, query in re.findall(r"```kql id=(\S+)\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    }


class _FailingAudit:
    def record(self, *_: object) -> None:
        raise OSError("table unreachable")


@cache
def emitted() -> dict[str, frozenset[str]]:
    """Metric name -> the dimensions it was recorded with, over every case the code distinguishes."""
    key = secrets.token_bytes(32)
    with (
        capture() as otel,
        IdentityEmulator(signing_key=key) as identity,
        GraphSimulator(key) as graph,
        Azurite() as azurite,
        pytest.MonkeyPatch.context() as env,
    ):
        for name, value in identity.env().items():
            env.setenv(name, value)
        telemetry = otel.telemetry
        client = GraphClient(
            session=requests.Session(),
            scope=f"{graph.origin}/.default",
            breaker=CircuitBreaker(threshold=5, cooldown_seconds=10, max_cooldown_seconds=40, probe_timeout_seconds=5),
            limits=ClientLimits(connect_timeout=2, read_timeout=5, max_attempts=2, max_wait_seconds=5,
                                slot_wait_seconds=5),
            telemetry=telemetry,
        )  # fmt: skip
        tenants = home_only(ManagedIdentityCredential(), WritePacer(1000, 1.0, on_wait=telemetry.waited))
        pipeline = CertStatePipeline(graph=client, tenants=tenants, graph_base_url=graph.base_url,
                                     max_dequeue_count=5, telemetry=telemetry, audit=_FailingAudit(),
                                     tenant_name=lambda tenant: "Contoso" if tenant else None)  # fmt: skip
        message = json.dumps(MESSAGE).encode()
        # 429 then 200 (a Retry-After), dropped then 200 (a backoff), 403 (a failed outcome)
        for n, step in enumerate([{"status": 429, "retryAfter": "0.1"}, {"drop": True}, {"status": 403}]):
            graph.configure(script=[step])
            pipeline.handle(message, Delivery(f"m-{n}", 1))
        graph.configure(script=[{"status": 500}, {"status": 500}])
        with pytest.raises(Exception):  # noqa: B017, PT011 - handed back for a redelivery
            pipeline.handle(message, Delivery("m-retry", 1))
        pipeline.handle(b"not json", Delivery("m-bad", 1))
        stranger = "dddddddd-0000-4000-8000-00000000000d"  # a tenant the deployment does not serve
        pipeline.handle(json.dumps({**MESSAGE, "tenantId": stranger}).encode(), Delivery("m-tenant", 1))
        held = DeferralRequested(delay_seconds=5, reason=DeferralReason.BREAKER_OPEN, cause=ErrorCode.GRAPH_UNAVAILABLE)
        deferring = CertStatePipeline(graph=RecordingGraph(held), tenants=directory(), graph_base_url=graph.base_url,
                                      max_dequeue_count=5, requeue=lambda text, delay: None,
                                      deferrals=MemoryDeferrals(), telemetry=telemetry)  # fmt: skip
        deferring.handle(body(), Delivery("m-d", 1))
        with QueueServiceClient.from_connection_string(azurite.connection_string) as queues:
            names = {"input": "ops-in", "poison": "ops-in-poison", "result": "ops-out"}
            Operations(
                queues=queues, queue_names=names, telemetry=telemetry, audit=None, retention_days=1
            ).record_queue_depths()
        return {name: frozenset(key for p in points for key in p.attributes) for name, points in otel.metrics().items()}


def named(query: str) -> tuple[set[str], set[str]]:
    """The metric names and the customDimensions fields a query names."""
    return set(re.findall(r'"(certstate\.[a-z.]+)"', query)), set(re.findall(r"customDimensions\.(\w+)", query))


ALL_QUERIES = {**workbook_queries(), **alert_queries()}


@pytest.mark.parametrize("name", sorted(ALL_QUERIES))
def test_every_field_a_query_names_is_one_the_code_emits(name: str):
    metrics, dimensions = named(ALL_QUERIES[name])
    assert metrics, f"{name} names no certstate metric"
    found = emitted()
    assert metrics <= set(found), f"{name}: never emitted: {sorted(metrics - set(found))}"
    available = set().union(*(found[m] for m in metrics))
    assert dimensions <= available, f"{name}: dimensions never recorded: {sorted(dimensions - available)}"


def test_the_check_sees_a_field_nobody_emits():
    metrics, dimensions = named(
        'customMetrics | where name == "certstate.outcomes" | extend s = customDimensions.stauts'
    )
    assert dimensions - emitted()["certstate.outcomes"] == {"stauts"}
    assert metrics == {"certstate.outcomes"}


def test_docs_show_the_kql_of_every_chart_and_alert_as_deployed():
    documented = documented_queries()
    for name, query in ALL_QUERIES.items():
        assert documented.get(name) == query.strip(), f"docs/operations.md: the KQL of {name} differs from infra/"


def test_the_workbook_is_a_workbook_of_the_function_s_app_insights():
    workbook: dict[str, Any] = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    assert workbook["version"] == "Notebook/1.0"
    charts = workbook_queries()
    assert {"outcomes-by-status", "top-error-codes", "graph-responses", "graph-latency", "queue-depths",
            "outcomes-by-tenant"} <= set(charts)  # fmt: skip
    alerts = text("modules/alerts.bicep")
    assert "serializedData: loadTextContent('../monitoring/workbook.json')" in alerts
    assert "sourceId: appInsights.id" in alerts


def test_every_alert_mails_the_action_group_and_main_passes_the_email():
    alerts = text("modules/alerts.bicep")
    assert len(alert_queries()) == 6
    assert "emailAddress: alertEmail" in alerts
    assert "actionGroup.id" in alerts
    main = text("main.bicep")
    assert "alertEmail: alertEmail" in main


def test_the_pictures_are_committed_and_shown():
    docs = DOCS.read_text(encoding="utf-8")
    for name in ("outcomes", "throttling", "latency"):
        assert (REPO / "docs" / "images" / f"{name}.png").is_file(), name
        assert f"](images/{name}.png)" in docs, name


def test_the_worker_exports_itself_and_tells_the_host_so():
    """One copy of each log line: OpenTelemetry mode in the host, the worker's own export announced to it."""
    host = json.loads((REPO / "host.json").read_text(encoding="utf-8"))
    assert host["telemetryMode"] == "OpenTelemetry"
    assert "Trace" in host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"].split(";")
    settings = dict(re.findall(r"name: '(\w+)'\n\s+value: ([^\n]+)", text("modules/functionapp.bicep")))
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "'true'"
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings  # the worker would configure a second one
    assert settings["OTEL_TRACES_SAMPLER"] == "'microsoft.fixed_percentage'"
    assert settings["OTEL_TRACES_SAMPLER_ARG"] == "traceSamplingRatio"
    main = text("main.bicep")
    ratio = "'${traceSamplingPercent / 100}.${padLeft(string(traceSamplingPercent % 100), 2, '0')}'"
    assert f"var traceSamplingRatio = {ratio}" in main  # 100 -> 1.00, 25 -> 0.25, 5 -> 0.05


def test_spans_are_sampled_as_deployed_and_no_chart_or_alert_reads_them():
    """The deployed default keeps a share of the message spans: every chart and alert reads unsampled metrics."""
    default = re.search(r"^param traceSamplingPercent int = (\d+)$", text("main.bicep"), re.M)
    assert default is not None
    assert 0 < int(default.group(1)) < 100  # 100 (traceSamplingPercent=100) keeps every span
    sampled_tables = ("requests", "traces", "dependencies", "exceptions", "itemCount")
    for name, query in ALL_QUERIES.items():
        assert query.lstrip().startswith("customMetrics"), name
        assert not any(re.search(rf"\b{table}\b", query) for table in sampled_tables), name
