"""The timer functions, invoked as the worker invokes them, over Azurite: queue depths and the audit purge."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueServiceClient

import function_app
from devstack.azurite import Azurite
from devstack.runner import registered_functions
from shared.operations import Operations
from shared.pipeline import Delivery
from shared.telemetry import QUEUE_DEPTH
from shared.wiring import reset_pipeline
from tests.integration.test_audit import pipeline as audited_pipeline
from tests.support.otel import capture
from tests.support.pipeline_fakes import body


def timer_function(name: str) -> func.Function:
    (function,) = [f for f in registered_functions(function_app.app) if f.get_function_name() == name]
    trigger = function.get_trigger()
    assert trigger is not None
    assert trigger.get_dict_repr()["type"] == "timerTrigger"
    return function


@pytest.fixture
def queues(azurite: Azurite, queue_names) -> Iterator[dict[str, str]]:
    names = {"input": queue_names("in"), "result": queue_names("out")}
    names["poison"] = names["input"] + "-poison"
    with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        for name in (names["input"], names["result"]):
            service.create_queue(name)
        yield names


@pytest.fixture
def app_settings(azurite: Azurite, queues, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("INPUT_QUEUE_NAME", queues["input"])
    monkeypatch.setenv("RESULT_QUEUE_NAME", queues["result"])
    monkeypatch.setenv("AUDIT_TABLE_NAME", "ops" + queues["input"].replace("-", "")[:20])
    reset_pipeline()
    yield
    reset_pipeline()


def put(azurite: Azurite, queue: str, count: int) -> None:
    with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_queue_client(queue)
        for n in range(count):
            client.send_message(json.dumps({"n": n}))


def test_the_registered_timer_logs_the_depth_of_each_queue(azurite, queues, app_settings, caplog):
    put(azurite, queues["input"], 3)
    put(azurite, queues["result"], 1)
    with caplog.at_level(logging.INFO, logger="certstate"):
        timer_function("record_queue_depths").get_user_function()(timer=TimerRequest(past_due=False))
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if '"queueDepths"' in r.getMessage()]
    assert line == {"event": "queueDepths", "input": 3, "poison": 0, "result": 1}


def test_queue_depths_are_a_gauge_per_queue(azurite, queues):
    put(azurite, queues["input"], 2)
    with capture() as otel, QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        operations = Operations(
            queues=service, queue_names=queues, telemetry=otel.telemetry, audit=None, retention_days=1
        )
        operations.record_queue_depths()
        put(azurite, queues["input"], 1)
        service.create_queue(queues["poison"])
        put(azurite, queues["poison"], 1)
        operations.record_queue_depths()
        depths = {p.attributes["queue"]: p.value for p in otel.metrics()[QUEUE_DEPTH]}
    assert depths == {"input": 3, "poison": 1, "result": 0}  # the last reading of each


def test_the_registered_purge_keeps_what_is_within_the_retention(azurite, app_settings, monkeypatch):
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "7")
    reset_pipeline()
    now = datetime.now(UTC)
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        table = service.create_table_if_not_exists(os.environ["AUDIT_TABLE_NAME"])
        for n, age in enumerate([1, 10]):
            audited_pipeline(table).handle(body(), Delivery(f"m-{n}", 1, now - timedelta(days=age)))
        timer_function("purge_audit_trail").get_user_function()(timer=TimerRequest(past_due=False))
        left = sorted(str(row["RowKey"]) for row in table.list_entities() if str(row["RowKey"]).startswith("m|"))
        service.delete_table(table.table_name)
    assert left == ["m|m-0"]
