"""Consent checks: what Entra's and Graph's answers become, and the outcome the CLI reads back (contract v1.2)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.contract.errors import ErrorCode, TransientError
from shared.contract.outcomes import ConsentState
from shared.graph.consent import READ_PATH, ConsentResult, ReadLimits, check_consent
from shared.graph.pacing import WritePacer
from shared.graph.tenancy import Tenant
from shared.pipeline import CertStatePipeline, Delivery
from shared.registry import Served
from tests.support.pipeline_fakes import NOW, SERVED, RecordingGraph, directory

LIMITS = ReadLimits(gate_seconds=1, connect_timeout=1, read_timeout=1)
BASE = "https://graph.microsoft.com/beta"
REFUSAL = (
    "ClientAssertionCredential.get_token failed: (invalid_client) AADSTS7000229: The client application "
    "a99a... is missing service principal in the tenant b0000000-0000-4000-8000-00000000000b."
)


class Credential:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return AccessToken("token-1", 4_000_000_000)


class Raw(io.BytesIO):
    """urllib3's response body as far as the check reads it."""

    def read(self, size: int | None = -1, decode_content: bool = False) -> bytes:
        return super().read(size)


class Session(requests.Session):
    """Answers every GET with one status and body, and records what was asked; refuses anything else."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.status, self.body = status, body or {"value": []}
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.calls.append((str(method), str(url)))
        assert kwargs["timeout"] == (1, 1)
        assert kwargs["allow_redirects"] is False
        response = requests.Response()
        response.status_code = self.status
        response.raw = Raw(json.dumps(self.body).encode())
        return response


def tenant(credential: Credential) -> Tenant:
    return Tenant(SERVED[0], credential, WritePacer(10, 1.0))


def check(credential: Credential, session: Session) -> ConsentResult:
    return check_consent(tenant(credential), session=session, scope="s/.default", graph_base_url=BASE, limits=LIMITS)


def test_consented_is_one_token_and_one_read_and_no_write():
    session = Session(200)
    result = check(Credential(), session)
    assert result.state is ConsentState.CONSENTED
    assert session.calls == [("GET", BASE + READ_PATH)]


def test_entras_refusal_for_the_tenant_is_not_consented_with_its_aadsts_code_and_nothing_is_sent_to_graph():
    session = Session()
    result = check(Credential(ClientAuthenticationError(REFUSAL)), session)
    assert (result.state, result.entra_code) == (ConsentState.NOT_CONSENTED, "AADSTS7000229")
    assert session.calls == []


def test_a_403_to_the_read_is_role_missing_with_graphs_code():
    body = {"error": {"code": "Forbidden", "message": "Application is not authorized to perform this operation."}}
    result = check(Credential(), Session(403, body))
    assert (result.state, result.graph_code, result.http_status) == (ConsentState.ROLE_MISSING, "Forbidden", 403)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ClientAuthenticationError("AADSTS700211: No matching federated identity record found"), 200),  # ours
        (ClientAuthenticationError("connection refused"), 200),
        (None, 503),
        (None, 429),
    ],
)
def test_what_cannot_tell_yet_is_transient(error: Exception | None, status: int):
    with pytest.raises(TransientError):
        check(Credential(error), Session(status))


def pipeline(result: ConsentResult, tenants: Any = None) -> tuple[CertStatePipeline, RecordingGraph, list[Tenant]]:
    graph, asked = RecordingGraph(), []

    def consent(checked: Tenant) -> ConsentResult:
        asked.append(checked)
        return result

    made = CertStatePipeline(
        graph=graph, tenants=tenants or directory(), graph_base_url=BASE, max_dequeue_count=5, clock=lambda: NOW,
        consent=consent,
    )  # fmt: skip
    return made, graph, asked


def outcome_of(made: CertStatePipeline, document: dict[str, Any]) -> dict[str, Any]:
    result = made.handle(json.dumps(document).encode(), Delivery("m-1", 1))
    assert result is not None
    return json.loads(result.text)  # type: ignore[no-any-return]


CHECK = {"check": "consent", "tenantId": SERVED[0].upper(), "correlationId": "check-1"}


def test_a_consented_tenant_is_validated_with_its_consent_and_nothing_patched():
    made, graph, asked = pipeline(ConsentResult(ConsentState.CONSENTED, "ok", http_status=200))
    outcome = outcome_of(made, CHECK)
    assert (outcome["status"], outcome["consent"], outcome["target"]["tenantId"]) == (
        "validated", {"state": "consented", "entraCode": None}, SERVED[0],
    )  # fmt: skip
    assert outcome["correlationId"] == "check-1"
    assert graph.requests == []
    assert [t.tenant_id for t in asked] == [SERVED[0]]


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (ConsentResult(ConsentState.NOT_CONSENTED, "refused", entra_code="AADSTS65001"), "tenantNotConsented"),
        (ConsentResult(ConsentState.ROLE_MISSING, "403", graph_code="Forbidden", http_status=403), "appRoleMissing"),
    ],
)
def test_not_consented_and_role_missing_fail_with_a_code_that_names_them(result: ConsentResult, code: str):
    made, _, _ = pipeline(result)
    outcome = outcome_of(made, CHECK)
    assert (outcome["status"], outcome["error"]["code"], outcome["consent"]["state"]) == (
        "failed", code, result.state.value,
    )  # fmt: skip
    assert outcome["consent"]["entraCode"] == result.entra_code


def test_a_check_for_a_tenant_not_served_is_rejected_with_no_check_run():
    made, _, asked = pipeline(ConsentResult(ConsentState.CONSENTED, "ok"))
    outcome = outcome_of(made, {**CHECK, "tenantId": "dddddddd-0000-4000-8000-00000000000d"})
    assert (outcome["status"], outcome["error"]["code"]) == ("rejected", "tenantNotAllowed")
    assert asked == []


def test_a_paused_tenant_is_checked():
    class Paused(Served):
        def lookup(self, tenant_id: str) -> Any:
            entry = super().lookup(tenant_id)
            return entry and type(entry)(entry.tenant_id, paused=True)

    made, _, asked = pipeline(
        ConsentResult(ConsentState.CONSENTED, "ok"), directory(served=Paused(SERVED, None, paused_recheck_seconds=5))
    )
    assert outcome_of(made, CHECK)["status"] == "validated"
    assert len(asked) == 1


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"check": "consent"}, "tenantId"),
        ({"check": "everything", "tenantId": SERVED[0]}, "check"),
        ({**CHECK, "tenantId": "not-a-guid"}, "tenantId"),
        ({**CHECK, "update": {}}, "update"),
    ],
)
def test_a_malformed_check_is_rejected_naming_the_field(document: dict[str, Any], field: str):
    made, _, asked = pipeline(ConsentResult(ConsentState.CONSENTED, "ok"))
    outcome = outcome_of(made, document)
    assert (outcome["status"], outcome["error"]["code"]) == ("rejected", ErrorCode.VALIDATION_FAILED.value)
    assert outcome["error"]["details"][0]["field"] == field
    assert asked == []
