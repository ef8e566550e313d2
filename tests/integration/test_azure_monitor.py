"""The real Azure Monitor distro, set up as deployed, exporting to a loopback ingestion endpoint.

Run in a fresh interpreter (the distro sets process-global providers once): the registered function
handles three messages; what arrives is one log line per message, one span per message (a request
carrying Graph's answer, no dependency per HTTP call), and the outcome metric.
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


def test_each_log_line_reaches_application_insights_once(graph: GraphSimulator, identity: IdentityEmulator):
    with FakeIngestion() as ingestion:
        env = {
            **os.environ,
            **identity.env(),
            **ingestion.env(),
            "GRAPH_BASE_URL": graph.base_url,
            "CREDENTIAL_MODE": "managedIdentity",
            "PYTHONPATH": str(REPO),
        }
        code = f"MESSAGE = {json.dumps(json.dumps(MESSAGE))}\n{SCRIPT}"
        run = subprocess.run(
            [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr[-3000:]
        lines = [json.loads(text) for text in ingestion.messages()]
        outcomes = sorted(line["correlationId"] for line in lines if line["event"] == "outcome")
        assert outcomes == ["order-0", "order-1", "order-2"]  # once each
        assert {line["event"] for line in lines} == {"outcome"}  # one line per message; the answer is on it
        requests = [e for e in ingestion.envelopes("Request") if e["data"]["baseData"]["name"] == "certstate.message"]
        assert len(requests) == 3
        properties = [r["data"]["baseData"]["properties"] for r in requests]
        assert {(p["status"], p["httpStatus"], p["attempts"]) for p in properties} == {("succeeded", "200", "1")}
        assert all(p["requestId"] for p in properties)
        assert ingestion.envelopes("RemoteDependency") == []  # one span per message: no second one per HTTP call
        counted = sum(p["value"] for p in ingestion.metrics() if p["name"] == "certstate.outcomes")
        assert counted == 3
