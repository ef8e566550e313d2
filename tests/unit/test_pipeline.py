"""The pipeline's promise: every delivery ends in exactly one outcome or one retry, never both, never neither."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import pipeline as pipeline_module
from shared.contract.envelope import Envelope, unwrap
from shared.contract.errors import (
    DeferralReason,
    DeferralRequested,
    ErrorCode,
    GraphRefused,
    GraphTrace,
    TransientError,
)
from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.contract.outcomes import Outcome, Result, Status, fit
from shared.graph.client import GraphResult
from shared.graph.routes import GraphRequest
from shared.graph.tenancy import Tenant, TenantDirectory
from shared.logs import log_event
from shared.pipeline import CertStatePipeline, Delivery
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.pipeline_fakes import HOME_TENANT, NOW, SECRET_VALUE, SERVED, RecordingGraph, body, directory


def make(
    graph: RecordingGraph, max_dequeue_count: int = 5, tenants: TenantDirectory | None = None
) -> CertStatePipeline:
    return CertStatePipeline(
        graph=graph, tenants=tenants or directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=max_dequeue_count, clock=lambda: NOW,
    )  # fmt: skip


def wire(result: Result | None) -> dict[str, Any]:
    assert result is not None, "deferred, not reported"
    return json.loads(result.text)  # type: ignore[no-any-return]


def deliver(graph: RecordingGraph, raw: bytes, delivery: Delivery) -> Result:
    result = make(graph).handle(raw, delivery)
    assert result is not None, "deferred, not reported"
    return result


def reported(result: Result | None) -> Outcome:
    assert result is not None, "deferred, not reported"
    return result.outcome


def test_success_outcome_matches_the_contract():
    graph = RecordingGraph()
    outcome = wire(make(graph).handle(body(), Delivery("m-1", 1)))
    assert outcome == {
        "schemaVersion": 1,
        "status": "succeeded",
        "correlationId": "order-4711",
        "messageId": "m-1",
        "dequeueCount": 1,
        "target": {"tenantId": None, "profileType": "iosScepCertificateProfile", "deviceConfigurationId": "cfg-1",
                   "managedDeviceCertificateStateId": "state-1", "via": None},
        "updatedProperties": ["certificateKeyUsage", "certificateThumbprint"],
        "httpStatus": 200,
        "graph": {"requestId": "req-1", "clientRequestId": "client-1", "date": "Fri, 27 Nov 2026 14:03:11 GMT"},
        "attempts": 1,
        "durationMs": outcome["durationMs"],
        "completedAt": "2026-11-27T14:03:11.402Z",
        "warnings": [],
        "error": None,
        "request": None,
        "requestOmitted": None,
        "graphRequest": None,
        "truncated": [],
    }  # fmt: skip
    assert graph.requests[0].url.endswith(
        "/microsoft.graph.iosScepCertificateProfile/managedDeviceCertificateStates/state-1"
    )


def test_base64_message_is_processed_like_raw_json():
    graph = RecordingGraph()
    assert reported(make(graph).handle(base64.b64encode(body()), Delivery("m-1", 1))).status is Status.SUCCEEDED
    assert graph.requests[0].body["certificateThumbprint"] == SECRET_VALUE


def test_invalid_message_is_rejected_without_calling_graph():
    graph = RecordingGraph()
    outcome = wire(make(graph).handle(body(managedDeviceCertificateStateId="../../users"), Delivery("m-2", 1)))
    assert outcome["status"] == "rejected"
    assert outcome["error"]["code"] == "validationFailed"
    assert outcome["error"]["details"][0]["field"] == "managedDeviceCertificateStateId"
    assert outcome["correlationId"] == "order-4711"
    assert outcome["target"]["managedDeviceCertificateStateId"] == "../../users"  # echoed to help find it, never sent
    assert graph.requests == []


def test_a_forbidden_cast_is_rejected_naming_the_allowed_profile_types_without_calling_graph():
    graph = RecordingGraph()
    outcome = wire(make(graph).handle(body(via="windowsPhone81VpnConfiguration/identityCertificate"), Delivery("m", 1)))
    assert (outcome["status"], outcome["error"]["code"]) == ("rejected", "validationFailed")
    assert outcome["error"]["details"] == [
        {"field": "profileType", "message": "iosScepCertificateProfile cannot follow windowsPhone81VpnConfiguration/"
         "identityCertificate: that navigation is typed windowsPhone81CertificateProfileBase, whose profile types "
         "are: windowsPhone81SCEPCertificateProfile"}
    ]  # fmt: skip
    assert outcome["target"]["via"] == "windowsPhone81VpnConfiguration/identityCertificate"
    assert graph.requests == []


def test_the_seed_hop_is_sent_with_a_warning_and_odata_type_is_not_an_updated_property():
    graph = RecordingGraph()
    update = {"@odata.type": "#microsoft.graph.managedDeviceCertificateState", "certificateKeyUsage": "keyEncipherment"}
    outcome = wire(make(graph).handle(body(via="identityCertificate", update=update), Delivery("m", 1)))
    assert outcome["status"] == "succeeded"
    assert outcome["updatedProperties"] == ["certificateKeyUsage"]
    (warning,) = outcome["warnings"]
    assert warning.startswith("via 'identityCertificate' has no owner cast")
    assert warning.endswith("one of: iosEasEmailProfileConfiguration, iosVpnConfiguration, iosikEv2VpnConfiguration")
    (request,) = graph.requests
    assert "/cfg-1/identityCertificate/microsoft.graph.iosScepCertificateProfile/" in request.url
    assert request.body == update


def test_unreadable_message_gets_the_queue_message_id_as_correlation_id():
    outcome = reported(make(RecordingGraph()).handle(b"\x00garbage", Delivery("m-3", 1)))
    assert (outcome.status, outcome.correlation_id, outcome.error and outcome.error.code) == (
        Status.REJECTED, "m-3", "malformedMessage",
    )  # fmt: skip


def test_dry_run_resolves_the_request_and_sends_nothing():
    graph = RecordingGraph()
    outcome = wire(make(graph).handle(body(dryRun=True), Delivery("m-4", 1)))
    assert outcome["status"] == "validated"
    assert outcome["graphRequest"]["url"] == (
        "https://graph.microsoft.com/beta/deviceManagement/deviceConfigurations/cfg-1"
        "/microsoft.graph.iosScepCertificateProfile/managedDeviceCertificateStates/state-1"
    )
    assert outcome["graphRequest"]["body"]["certificateKeyUsage"] == "digitalSignature"
    assert graph.requests == []


@pytest.mark.parametrize(("expires_at", "status"), [("2026-11-27T14:03:11Z", "expired"),
                                                     ("2026-11-27T15:03:12+01:00", "succeeded")])  # fmt: skip
def test_expired_messages_are_not_applied(expires_at: str, status: str):
    graph = RecordingGraph()
    outcome = wire(make(graph).handle(body(expiresAt=expires_at), Delivery("m-5", 1)))
    assert outcome["status"] == status
    assert len(graph.requests) == (status == "succeeded")


def test_graph_refusal_fails_once_and_carries_the_original_request_for_replay():
    refusal = GraphRefused(code=ErrorCode.GRAPH_FORBIDDEN, message="Insufficient privileges", graph_code="Forbidden",
                           http_status=403, trace=GraphTrace("req-9", "client-9", None), attempts=1)  # fmt: skip
    outcome = wire(make(RecordingGraph(refusal)).handle(body(), Delivery("m-6", 1)))
    assert outcome["status"] == "failed"
    assert outcome["error"] == {"code": "graphForbidden", "message": "Insufficient privileges", "details": [],
                                "graphCode": "Forbidden"}  # fmt: skip
    assert outcome["request"] == json.loads(body())
    assert outcome["graph"]["requestId"] == "req-9"
    assert outcome["httpStatus"] == 403


def transient() -> TransientError:
    return TransientError(code=ErrorCode.GRAPH_THROTTLED, message="Please retry again later.", http_status=429,
                          trace=GraphTrace("req-t", "client-t", None), attempts=4)  # fmt: skip


@pytest.mark.parametrize("dequeue_count", [1, 2, 3, 4])
def test_transient_failure_before_the_last_delivery_goes_back_to_the_queue(dequeue_count: int):
    with pytest.raises(TransientError):
        make(RecordingGraph(transient())).handle(body(), Delivery("m-7", dequeue_count))


@pytest.mark.parametrize("dequeue_count", [5, 6])
def test_transient_failure_on_the_last_delivery_becomes_the_failed_outcome(dequeue_count: int):
    outcome = wire(make(RecordingGraph(transient())).handle(body(), Delivery("m-8", dequeue_count)))
    assert (outcome["status"], outcome["error"]["code"], outcome["attempts"]) == ("failed", "graphThrottled", 4)
    assert outcome["request"] == json.loads(body())


def test_a_bug_is_retried_and_reported_on_the_last_delivery():
    with pytest.raises(ZeroDivisionError):
        make(RecordingGraph(ZeroDivisionError())).handle(body(), Delivery("m-9", 1))
    outcome = reported(make(RecordingGraph(ZeroDivisionError())).handle(body(), Delivery("m-9", 5)))
    assert outcome.status is Status.FAILED
    assert outcome.error is not None
    assert outcome.error.code == "internalError"


def test_info_logs_carry_ids_but_no_update_values(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    make(RecordingGraph()).handle(body(), Delivery("m-10", 2))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.startswith("certstate")]
    outcome_line = next(line for line in lines if line["event"] == "outcome")
    assert outcome_line | {"durationMs": 0} == {
        "event": "outcome", "messageId": "m-10", "dequeueCount": 2, "correlationId": "order-4711",
        "status": "succeeded", "httpStatus": 200, "requestId": "req-1", "attempts": 1, "durationMs": 0,
    }  # fmt: skip
    assert SECRET_VALUE not in caplog.text


def test_graph_attempt_logs_carry_the_correlation_id(caplog: pytest.LogCaptureFixture):
    class LoggingGraph(RecordingGraph):
        def patch(self, request: GraphRequest, tenant: Tenant, booked: float | None = None) -> GraphResult:
            log_event(logging.getLogger("certstate.graph"), logging.INFO, "graphResponse", httpStatus=200)
            return super().patch(request, tenant)

    caplog.set_level(logging.INFO)
    make(LoggingGraph()).handle(body(), Delivery("m-11", 3))
    attempt = next(json.loads(r.getMessage()) for r in caplog.records if r.name == "certstate.graph")
    assert attempt == {"event": "graphResponse", "messageId": "m-11", "dequeueCount": 3,
                       "correlationId": "order-4711", "httpStatus": 200}  # fmt: skip


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
near_valid = st.fixed_dictionaries(
    {
        "profileType": st.sampled_from(["iosScepCertificateProfile", "windows81SCEPCertificateProfile", "x", ""]),
        "deviceConfigurationId": st.text(max_size=10),
        "managedDeviceCertificateStateId": st.text(alphabet="ab.:/%?#", max_size=6),
        "update": st.dictionaries(
            st.sampled_from(["certificateKeyLength", "devicePlatform", "certificateIssuer", "bogus", "id"]),
            json_values,
            max_size=3,
        ),
    },
    optional={
        "via": st.text(max_size=30),
        "dryRun": json_values,
        "expiresAt": json_values,
        "tenantId": st.sampled_from([*SERVED, HOME_TENANT, SERVED[0].upper(), SERVED[0] + "\n", "x"]) | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | near_valid.map(
    lambda v: json.dumps(v).encode()))  # fmt: skip
def test_any_input_yields_exactly_one_outcome_and_never_raises(raw: bytes):
    graph = RecordingGraph()
    for encoded in (raw, base64.b64encode(raw)):
        result = make(graph).handle(encoded, Delivery("h-1", 1))
        assert result is not None
        outcome = result.outcome
        assert outcome.status in {Status.REJECTED, Status.SUCCEEDED, Status.VALIDATED, Status.EXPIRED}
        assert json.loads(result.text)["messageId"] == "h-1"
        if outcome.status is Status.REJECTED:
            assert outcome.error is not None
            assert outcome.error.code in {"malformedMessage", "validationFailed", "tenantNotAllowed"}
    for request in graph.requests:
        assert request.url.startswith("https://graph.microsoft.com/beta/deviceManagement/deviceConfigurations/")
        assert "?" not in request.url
        assert "#" not in request.url
        assert "/../" not in request.url


# ---- issue 11: whatever a message holds, one outcome that fits and serializes ------------------------


def sized_body(total: int, **overrides: Any) -> bytes:
    """A valid message of exactly `total` bytes (certificateIssuer padded)."""
    raw = body(update={"certificateIssuer": ""}, **overrides)
    return raw.replace(b'"certificateIssuer": ""', b'"certificateIssuer": "' + b"y" * (total - len(raw)) + b'"')


def test_a_valid_65520_byte_message_graph_refuses_ends_in_one_failed_outcome_that_fits():
    raw = sized_body(65_520)
    assert len(raw) == 65_520
    refusal = GraphRefused(code=ErrorCode.GRAPH_NOT_FOUND, message="Resource not found", http_status=404,
                           trace=GraphTrace("req-4", "client-4", None), attempts=1)  # fmt: skip
    graph = RecordingGraph(refusal)
    result = deliver(graph, raw, Delivery("m-12", 1))
    out = wire(result)
    assert len(result.text.encode()) <= QUEUE_MESSAGE_BYTES
    assert (out["status"], out["error"]["code"]) == ("failed", "graphNotFound")
    assert out["request"] is None
    compact = json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":")).encode()  # the request as sent
    assert out["requestOmitted"] == {"bytes": len(compact), "sha256": hashlib.sha256(compact).hexdigest()}
    assert out["truncated"] == ["request"]
    assert len(graph.requests) == 1


def test_a_dry_run_of_a_near_limit_message_fits():
    result = deliver(RecordingGraph(), sized_body(65_520, dryRun=True), Delivery("m-13", 1))
    out = wire(result)
    assert len(result.text.encode()) <= QUEUE_MESSAGE_BYTES
    assert out["status"] == "validated"
    assert out["graphRequest"]["body"] is None
    assert out["graphRequest"]["url"].endswith("/managedDeviceCertificateStates/state-1")
    assert out["truncated"] == ["graphRequest.body"]


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"certificateKeyUsage": "k" * 60_000}, "update.certificateKeyUsage"),
        ({"certificateKeyUsage": "digitalSignature," + "k" * 60_000}, "update.certificateKeyUsage"),
        ({"devicePlatform": "p" * 60_000}, "update.devicePlatform"),
    ],
)
def test_a_long_bad_value_is_shown_once_as_an_excerpt(update: dict[str, Any], field: str):
    result = deliver(RecordingGraph(), body(update=update), Delivery("m-14", 1))
    out = wire(result)
    assert len(result.text) < 2_000  # was 121 KB: the value twice
    assert out["error"]["details"][0]["field"] == field
    assert "(60000 characters)" in out["error"]["details"][0]["message"]
    assert result.text.count("(60000 characters)") == 1  # the summary names the field, not the value again
    assert out["error"]["message"] == f"{field} is invalid (see details)"


def test_a_long_bad_profile_type_is_not_echoed_in_full_anywhere():
    result = deliver(RecordingGraph(), body(profileType="P" * 60_000), Delivery("m-15", 1))
    assert len(result.text) < 3_000
    assert "P" * 300 not in result.text  # the target echo is capped too


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"profileType": "\ud800"}, "profileType"),
        ({"deviceConfigurationId": "cfg-\udfff"}, "deviceConfigurationId"),
        ({"correlationId": "\ud83d"}, "correlationId"),
        ({"update": {"certificateIssuer": "CN=\ud800"}}, "update.certificateIssuer"),
        ({"update": {"\udc00": "x"}}, "update.\\udc00"),
        ({"via": ["\ud800"]}, "via[0]"),
    ],
)
def test_a_lone_surrogate_is_a_malformed_message_naming_the_field(document: dict[str, Any], field: str):
    raw = body(**document)
    assert b"\\ud" in raw  # json.dumps wrote the escape, as a producer would
    graph = RecordingGraph()
    result = deliver(graph, raw, Delivery("m-16", 1))
    result.text.encode("utf-8")
    out = wire(result)
    assert (out["status"], out["error"]["code"]) == ("rejected", "malformedMessage")
    assert out["error"]["details"] == [{"field": field, "message": out["error"]["details"][0]["message"]}]
    assert "lone UTF-16 surrogate" in out["error"]["message"]
    assert out["correlationId"] in {"order-4711", "m-16"}
    assert graph.requests == []


def test_a_paired_surrogate_escape_is_ordinary_text():
    graph = RecordingGraph()
    result = deliver(graph, body(update={"certificateIssuer": "CN=😀"}).replace("😀".encode(), b"\\ud83d\\ude00"),
                                Delivery("m-17", 1))  # fmt: skip
    assert result.outcome.status is Status.SUCCEEDED
    assert graph.requests[0].body["certificateIssuer"] == "CN=😀"


def test_a_lone_surrogate_in_graphs_answer_still_gives_an_outcome_in_utf8():
    refusal = GraphRefused(code=ErrorCode.GRAPH_BAD_REQUEST, message="bad \ud800 value", graph_code="Bad\udfff",
                           http_status=400, attempts=1)  # fmt: skip
    result = deliver(RecordingGraph(refusal), body(), Delivery("m-18", 1))
    assert wire(result)["error"]["message"] == "bad \\ud800 value"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"profileType": ' + b"7" * 5000 + b"}",
        b'{"update": {"certificateKeyLength": -' + b"9" * 5000 + b"}}",
        b'{"update": {"certificateKeyLength": 1e999}}',
    ],
    ids=["5000-digit", "negative-5000-digit", "1e999"],
)
def test_a_number_python_cannot_hold_is_a_malformed_message_and_never_retried(raw: bytes):
    for dequeue_count in (1, 5):
        result = deliver(RecordingGraph(), raw, Delivery("m-19", dequeue_count))  # raises nothing
        assert (result.outcome.status, result.outcome.error and result.outcome.error.code) == (
            Status.REJECTED, "malformedMessage",
        )  # fmt: skip
    assert len(result.text) < 1_000


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"managedDeviceCertificateStateId": "d99bc884-c884-d99b-84c8-9bd984c89bd9\n"},
            "managedDeviceCertificateStateId",
        ),
        ({"deviceConfigurationId": "cfg-1\n"}, "deviceConfigurationId"),
        ({"managedDeviceCertificateStateId": "..\n"}, "managedDeviceCertificateStateId"),
        ({"correlationId": "order-4711\n"}, "correlationId"),
        ({"expiresAt": "2027-01-01T00:00:00Z\n"}, "expiresAt"),
        (
            {"update": {"certificateExpirationDateTime": "2027-01-01T00:00:00Z\n"}},
            "update.certificateExpirationDateTime",
        ),
    ],
)
def test_a_final_newline_is_not_part_of_any_valid_value(overrides: dict[str, Any], field: str):
    graph = RecordingGraph()
    out = wire(deliver(graph, body(**overrides), Delivery("m-20", 1)))
    assert out["status"] == "rejected"
    assert [d["field"] for d in out["error"]["details"]] == [field]
    assert graph.requests == []
    if "correlationId" in overrides:
        assert out["correlationId"] == "m-20"  # the invalid id is not echoed as the correlation id


def test_graph_warnings_reach_the_outcome_on_success_and_on_the_last_delivery():
    capped = "Graph's Retry-After '3600' was capped at 60 s: writes resumed before it ran out"
    success = GraphResult(status=200, trace=GraphTrace("r", "c", None), attempts=2, warnings=(capped,))
    assert deliver(RecordingGraph(success), body(), Delivery("m-21", 1)).outcome.warnings == [capped]
    throttled = TransientError(code=ErrorCode.GRAPH_THROTTLED, message="throttled", http_status=429, attempts=1,
                               warnings=(capped,))  # fmt: skip
    last = deliver(RecordingGraph(throttled), body(), Delivery("m-21", 5)).outcome
    assert (last.status, last.warnings) == (Status.FAILED, [capped])


def test_a_capped_retry_after_met_before_a_deferral_reaches_the_outcome_of_the_copy():
    capped = "Graph's Retry-After '3600' was capped at 60 s: writes resumed before it ran out"
    copies: list[str] = []
    records = MemoryDeferrals()

    def with_records(graph: RecordingGraph) -> CertStatePipeline:
        return CertStatePipeline(graph=graph, tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
                                 max_dequeue_count=5, requeue=lambda text, _delay: copies.append(text),
                                 deferrals=records, clock=lambda: NOW)  # fmt: skip

    assert with_records(RecordingGraph(DeferralRequested(60, DeferralReason.WRITE_BUDGET, warnings=(capped,)))).handle(
        body(), Delivery("m-22", 1)) is None  # fmt: skip
    (copy,) = copies
    assert unwrap(json.loads(copy))[1] == Envelope("m-22", 1, records.only().token, "20261127", (capped,))
    outcome = reported(with_records(RecordingGraph()).handle(copy.encode(), Delivery("copy-of-m-22", 1)))
    assert (outcome.status, outcome.message_id, outcome.warnings) == (Status.SUCCEEDED, "m-22", [capped])


def test_a_bug_while_fitting_the_outcome_still_writes_its_bare_form(monkeypatch: pytest.MonkeyPatch):
    real = fit
    calls: list[Outcome] = []

    def broken_once(outcome: Outcome, budget: int) -> tuple[Outcome, str]:
        calls.append(outcome)
        if len(calls) == 1:
            raise ZeroDivisionError
        return real(outcome, budget)

    monkeypatch.setattr(pipeline_module, "fit", broken_once)
    out = wire(deliver(RecordingGraph(), body(), Delivery("m-23", 1)))
    assert (out["status"], out["messageId"], out["truncated"]) == ("succeeded", "m-23", ["*"])


def test_a_tenant_not_served_is_rejected_before_any_credential_exists():
    graph, built = RecordingGraph(), list[str]()
    stranger = "9999dddd-0000-4000-8000-000000000009"
    for dry_run in (False, True):
        outcome = wire(make(graph, tenants=directory(built)).handle(
            body(tenantId=stranger, dryRun=dry_run), Delivery("m-20", 1)))  # fmt: skip
        assert outcome["status"] == "rejected"
        assert outcome["error"]["code"] == "tenantNotAllowed"
        assert outcome["error"]["details"][0]["field"] == "tenantId"
        assert outcome["target"]["tenantId"] == stranger
    assert graph.requests == []
    assert built == []


@pytest.mark.parametrize("bad", [SERVED[0] + "\n", "{" + SERVED[0] + "}", SERVED[0][:-1], 42, ""])
def test_a_tenant_id_that_is_not_a_guid_is_a_validation_failure(bad: object):
    outcome = wire(make(RecordingGraph()).handle(body(tenantId=bad), Delivery("m-21", 1)))
    assert (outcome["status"], outcome["error"]["code"]) == ("rejected", "validationFailed")
    assert outcome["error"]["details"][0]["field"] == "tenantId"


def test_each_message_goes_out_with_its_own_tenant():
    graph, built = RecordingGraph(), list[str]()
    pipeline = make(graph, tenants=directory(built))
    given = [None, HOME_TENANT, SERVED[0].upper(), SERVED[1], SERVED[0]]
    outcomes = [
        wire(pipeline.handle(body(**({"tenantId": t} if t else {})), Delivery(f"m-{i}", 1)))
        for i, t in enumerate(given)
    ]
    assert [o["target"]["tenantId"] for o in outcomes] == [None, HOME_TENANT, SERVED[0], SERVED[1], SERVED[0]]
    assert [t.tenant_id for t in graph.tenants] == [None, None, SERVED[0], SERVED[1], SERVED[0]]
    names = [getattr(t.credential, "name", None) for t in graph.tenants]
    assert names == ["home", "home", SERVED[0], SERVED[1], SERVED[0]]
    assert graph.tenants[2] is graph.tenants[4]  # one credential and pacer per tenant, built once
    assert built == [SERVED[0], SERVED[1]]


def test_a_tenants_deferral_goes_back_on_the_queue_with_its_tenant_and_writes_no_outcome(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO)
    requeued: list[tuple[str, int]] = []
    pipeline = CertStatePipeline(
        graph=RecordingGraph(DeferralRequested(3.5, DeferralReason.WRITE_BUDGET, ErrorCode.GRAPH_THROTTLED)),
        tenants=directory(),
        graph_base_url="https://graph.microsoft.com/beta", max_dequeue_count=5,
        requeue=lambda text, delay: requeued.append((text, delay)), deferrals=MemoryDeferrals(), clock=lambda: NOW,
    )  # fmt: skip
    assert pipeline.handle(body(tenantId=SERVED[0]), Delivery("m-30", 1)) is None
    ((text, delay),) = requeued
    assert delay == 4
    assert json.loads(text)["message"]["tenantId"] == SERVED[0]
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "certstate"]
    assert [(e["event"], e["tenantId"]) for e in events] == [("deferred", SERVED[0])]
    make(RecordingGraph()).handle(body(tenantId=SERVED[1]), Delivery("m-31", 1))
    assert json.loads(caplog.records[-1].getMessage())["tenantId"] == SERVED[1]  # the outcome's event
