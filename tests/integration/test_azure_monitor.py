"""The real Azure Monitor distro, set up as deployed, exporting to a loopback ingestion endpoint.

Run in a fresh interpreter (the distro sets process-global providers once): the registered function
handles three messages, the first refused by Graph; what arrives is one span per message (a request
carrying Graph's answer, no dependency per HTTP call), the failed message's warning lines once each
and no INFO line (the span says it), and the outcome metric.
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
    graph.configure(script=[{"status": 403}])  # the first message fails: its lines are warnings
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
        exported = sorted((line["event"], line["correlationId"]) for line in lines)
        # Once each, and only the warnings: a succeeded message is its span alone, the failed one also its lines.
        assert exported == [("graphResponse", "order-0"), ("outcome", "order-0")]
        requests = [e for e in ingestion.envelopes("Request") if e["data"]["baseData"]["name"] == "certstate.message"]
        properties = sorted((r["data"]["baseData"]["properties"] for r in requests), key=lambda p: p["correlationId"])
        assert [(p["status"], p["httpStatus"], p["attempts"]) for p in properties] == [
            ("failed", "403", "1"), ("succeeded", "200", "1"), ("succeeded", "200", "1")
        ]  # fmt: skip
        assert all(p["requestId"] for p in properties)
        assert ingestion.envelopes("RemoteDependency") == []  # one span per message: no second one per HTTP call
        counted = sum(p["value"] for p in ingestion.metrics() if p["name"] == "certstate.outcomes")
        assert counted == 3
