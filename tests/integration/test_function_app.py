"""The registered function, invoked the way the Python worker invokes it: through `app.get_functions()`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage  # not func.QueueMessage, which has no dequeue count

import function_app
from devstack.graph_simulator import GraphSimulator
from devstack.identity_emulator import IdentityEmulator
from devstack.runner import registered_functions
from shared.contract.errors import TransientError
from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.wiring import reset_pipeline
from tests.support.pipeline_fakes import SEEDED_MESSAGE as MESSAGE

QUEUE_FUNCTION = "process_certificate_state_update"


class Out(func.Out[str]):
    def __init__(self) -> None:
        self.value: str | None = None

    def set(self, val: str) -> None:
        self.value = val

    def get(self) -> str:
        assert self.value is not None
        return self.value


@pytest.fixture
def registered() -> func.Function:
    (function,) = [f for f in registered_functions(function_app.app) if f.get_function_name() == QUEUE_FUNCTION]
    return function


@pytest.fixture
def app_settings(graph: GraphSimulator, identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """App settings as the host exports them; the pipeline is rebuilt from them."""
    monkeypatch.setenv("GRAPH_BASE_URL", graph.base_url)
    monkeypatch.setenv("GRAPH_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("GRAPH_MAX_WAIT_SECONDS", "2")
    reset_pipeline()
    yield
    reset_pipeline()


def invoke(function: func.Function, body: bytes | str, dequeue_count: int = 1) -> dict[str, Any] | None:
    now = datetime.now(UTC)
    message = QueueMessage(  # type: ignore[no-untyped-call]
        id="msg-1", body=body, dequeue_count=dequeue_count, expiration_time=now, insertion_time=now,
        time_next_visible=now, pop_receipt="pr",
    )  # fmt: skip
    out = Out()
    function.get_user_function()(msg=message, outcome=out)
    return None if out.value is None else json.loads(out.value)


def test_the_bindings_are_the_documented_ones(registered: func.Function):
    bindings = {b["type"]: {**b, "direction": b["direction"].name} for b in registered.get_bindings_dict()["bindings"]}
    connection = "AzureWebJobsStorage"
    assert bindings["queueTrigger"] == {"direction": "IN", "type": "queueTrigger", "name": "msg",
                                        "queueName": "%INPUT_QUEUE_NAME%", "connection": connection}  # fmt: skip
    assert bindings["queue"] == {"direction": "OUT", "type": "queue", "name": "outcome",
                                 "queueName": "%RESULT_QUEUE_NAME%", "connection": connection}  # fmt: skip
    assert registered.get_function_name() == "process_certificate_state_update"


@pytest.mark.usefixtures("app_settings")
def test_an_update_reaches_graph_and_yields_its_outcome(registered: func.Function, graph: GraphSimulator):
    outcome = invoke(registered, json.dumps(MESSAGE).encode(), dequeue_count=2)
    assert outcome is not None
    assert (outcome["status"], outcome["messageId"], outcome["dequeueCount"]) == ("succeeded", "msg-1", 2)
    assert outcome["graph"]["requestId"] == graph.requests()[-1]["requestId"]


@pytest.mark.usefixtures("app_settings")
def test_a_string_body_is_read_like_bytes(registered: func.Function):
    outcome = invoke(registered, json.dumps(MESSAGE))
    assert outcome is not None
    assert outcome["status"] == "succeeded"


@pytest.mark.usefixtures("app_settings")
def test_bad_input_is_an_outcome_not_an_exception(registered: func.Function, graph: GraphSimulator):
    outcome = invoke(registered, b"\xff not json")
    assert outcome is not None
    assert (outcome["status"], outcome["error"]["code"]) == ("rejected", "malformedMessage")
    assert graph.requests() == []


@pytest.mark.usefixtures("app_settings")
def test_a_transient_failure_raises_and_writes_no_outcome_until_the_last_delivery(
    registered: func.Function, graph: GraphSimulator
):
    graph.configure(error_rate=1.0, error_statuses=[503])
    for dequeue_count in (1, 4):
        with pytest.raises(TransientError):
            invoke(registered, json.dumps(MESSAGE), dequeue_count=dequeue_count)
    outcome = invoke(registered, json.dumps(MESSAGE), dequeue_count=5)  # host.json maxDequeueCount
    assert outcome is not None
    assert (outcome["status"], outcome["error"]["code"]) == ("failed", "graphUnavailable")


# ---- issue 11 ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("app_settings")
def test_a_lone_surrogate_is_an_outcome_not_an_exception(registered: func.Function, graph: GraphSimulator):
    outcome = invoke(registered, json.dumps({**MESSAGE, "deviceConfigurationId": "\ud800"}))  # ASCII: the escape
    assert outcome is not None
    assert (outcome["status"], outcome["error"]["code"]) == ("rejected", "malformedMessage")
    assert outcome["error"]["details"][0]["field"] == "deviceConfigurationId"
    assert graph.requests() == []


@pytest.mark.usefixtures("app_settings")
def test_a_near_limit_message_graph_does_not_know_fails_once_with_an_outcome_that_fits(
    registered: func.Function, graph: GraphSimulator
):
    unknown = {**MESSAGE, "managedDeviceCertificateStateId": "00000000-0000-4000-8000-000000000000"}
    text = json.dumps({**unknown, "update": {"certificateIssuer": ""}}, separators=(",", ":"))  # as producers send
    text = text.replace('"certificateIssuer":""', '"certificateIssuer":"' + "y" * (65_520 - len(text)) + '"')
    assert len(text.encode()) == 65_520
    outcome = invoke(registered, text)
    assert outcome is not None
    assert len(json.dumps(outcome, separators=(",", ":"), ensure_ascii=False).encode()) <= QUEUE_MESSAGE_BYTES
    assert (outcome["status"], outcome["error"]["code"], outcome["httpStatus"]) == ("failed", "graphNotFound", 404)
    assert outcome["request"] is None
    assert outcome["requestOmitted"] == {"bytes": 65_520, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert len([r for r in graph.requests() if r["method"] == "PATCH"]) == 1


@pytest.mark.usefixtures("app_settings")
def test_an_unreachable_identity_endpoint_ends_in_credential_unavailable_without_a_traceback(
    registered: func.Function, identity: IdentityEmulator, caplog: pytest.LogCaptureFixture
):
    identity.stop()
    with pytest.raises(TransientError):
        invoke(registered, json.dumps(MESSAGE), dequeue_count=1)
    outcome = invoke(registered, json.dumps(MESSAGE), dequeue_count=5)
    assert outcome is not None
    assert (outcome["status"], outcome["error"]["code"]) == ("failed", "credentialUnavailable")
    assert outcome["request"] == MESSAGE
    assert not [r for r in caplog.records if r.name.startswith("certstate") and r.exc_info]
