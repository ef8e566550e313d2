"""The real Azure Monitor exporters, set up as deployed, exporting to a loopback ingestion endpoint.

Run in a fresh interpreter (the providers are process-global, set once): the registered function
handles three messages, the first refused by Graph; what arrives is one span per message (a request
carrying Graph's answer, no dependency per HTTP call), the failed message's warning lines once each
and no INFO line (the span says it), and the outcome metric; with every span sampled out, the same
lines and metric without the spans.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from devstack.appinsights import FakeIngestion
from devstack.graph_simulator import GraphSimulator
from devstack.identity_emulator import IdentityEmulator
from tests.infra.bicep import REPO
from tests.support.pipeline_fakes import SEEDED_MESSAGE as MESSAGE

SCRIPT = textwrap.dedent(
    """
    import datetime, json
    from azure.functions.queue import QueueMessage
    import function_app
    from devstack.runner import registered_functions
    from shared import telemetry, wiring

    (fn,) = [f for f in registered_functions(function_app.app) if f.get_function_name().startswith("process")]
    class Out:
        def set(self, value): self.value = value
    now = datetime.datetime.now(datetime.timezone.utc)
    for n in range(3):
        body = json.dumps({**json.loads(MESSAGE), "correlationId": f"order-{n}"}).encode()
        msg = QueueMessage(id=f"m-{n}", body=body, dequeue_count=1, insertion_time=now)
        fn.get_user_function()(msg=msg, outcome=Out())
        wiring.reset_pipeline()  # as the local stack does: a rebuilt pipeline must not configure a second exporter
    assert telemetry.configure_azure_monitor_once(wiring.load_settings().APPLICATIONINSIGHTS_CONNECTION_STRING)
    telemetry.flush()
    """
)


def _run(graph: GraphSimulator, identity: IdentityEmulator, ingestion: FakeIngestion, **settings: str) -> None:
    """Three messages through the registered function in a fresh interpreter, the first refused by Graph."""
    graph.configure(script=[{"status": 403}])  # the first message fails: its lines are warnings
    env = {
        **os.environ,
        **identity.env(),
        **ingestion.env(),
        "GRAPH_BASE_URL": graph.base_url,
        "CREDENTIAL_MODE": "managedIdentity",
        "PYTHONPATH": str(REPO),
        **settings,
    }
    code = f"MESSAGE = {json.dumps(json.dumps(MESSAGE))}\n{SCRIPT}"
    run = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]


def _exported_lines(ingestion: FakeIngestion) -> list[tuple[str, str]]:
    return sorted((line["event"], line["correlationId"]) for line in map(json.loads, ingestion.messages()))


def _counted_outcomes(ingestion: FakeIngestion) -> float:
    return float(sum(p["value"] for p in ingestion.metrics() if p["name"] == "certstate.outcomes"))


def test_each_log_line_reaches_application_insights_once(graph: GraphSimulator, identity: IdentityEmulator):
    with FakeIngestion() as ingestion:
        _run(graph, identity, ingestion, WEBSITE_SITE_NAME="func-certstate-test")
        # Every item names the function app as its cloud role, as Application Insights' map and filters show it.
        assert {e["tags"].get("ai.cloud.role") for e in ingestion.envelopes()} == {"func-certstate-test"}
        # Once each, and only the warnings: a succeeded message is its span alone, the failed one also its lines.
        assert _exported_lines(ingestion) == [("graphResponse", "order-0"), ("outcome", "order-0")]
        requests = [e for e in ingestion.envelopes("Request") if e["data"]["baseData"]["name"] == "certstate.message"]
        properties = sorted((r["data"]["baseData"]["properties"] for r in requests), key=lambda p: p["correlationId"])
        assert [(p["status"], p["httpStatus"], p["attempts"]) for p in properties] == [
            ("failed", "403", "1"), ("succeeded", "200", "1"), ("succeeded", "200", "1")
        ]  # fmt: skip
        assert all(p["requestId"] for p in properties)
        assert ingestion.envelopes("RemoteDependency") == []  # one span per message: no second one per HTTP call
        assert _counted_outcomes(ingestion) == 3


def test_a_failure_and_every_outcome_are_exported_whatever_the_span_sampling(
    graph: GraphSimulator, identity: IdentityEmulator
):
    """With every span sampled out (the template's setting at 0 %), the failed message's lines and the metric remain."""
    with FakeIngestion() as ingestion:
        _run(
            graph, identity, ingestion, OTEL_TRACES_SAMPLER="microsoft.fixed_percentage", OTEL_TRACES_SAMPLER_ARG="0.00"
        )
        assert ingestion.envelopes("Request") == []  # sampled out: no span recorded, none exported
        assert _exported_lines(ingestion) == [("graphResponse", "order-0"), ("outcome", "order-0")]
        assert _counted_outcomes(ingestion) == 3
