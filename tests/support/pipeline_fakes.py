"""Stand-ins the pipeline tests share: a Graph that answers as told, served tenants, and message bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.contract.errors import GraphTrace
from shared.graph.client import GraphResult
from shared.graph.pacing import WritePacer
from shared.graph.routes import GraphRequest
from shared.graph.tenancy import Tenant, TenantDirectory
from shared.registry import Served

NOW = datetime(2026, 11, 27, 14, 3, 11, 402000, tzinfo=UTC)
SEEDED_MESSAGE: dict[str, Any] = {
    "correlationId": "order-4711",
    "profileType": "iosScepCertificateProfile",
    "deviceConfigurationId": "b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11",
    "managedDeviceCertificateStateId": "d99bc884-c884-d99b-84c8-9bd984c89bd9",
    "update": {"certificateKeyUsage": "digitalSignature"},
}
"""A valid message whose configuration and state are in the Graph simulator's default seed."""
SECRET_VALUE = "Thumbprint-That-Must-Not-Be-Logged"
HOME_TENANT = "0000aaaa-0000-4000-8000-000000000001"
SERVED = ("1111bbbb-0000-4000-8000-000000000002", "2222cccc-0000-4000-8000-000000000003")


class RecordingGraph:
    """Answers PATCHes as told and records them (the real client has its own loopback tests)."""

    def __init__(self, *answers: GraphResult | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[GraphRequest] = []
        self.tenants: list[Tenant] = []

    def patch(self, request: GraphRequest, tenant: Tenant, booked: float | None = None) -> GraphResult:
        self.requests.append(request)
        self.tenants.append(tenant)
        answer = self.answers.pop(0) if self.answers else ok()
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok() -> GraphResult:
    return GraphResult(status=200, trace=GraphTrace("req-1", "client-1", "Fri, 27 Nov 2026 14:03:11 GMT"), attempts=1)


class NamedCredential:
    """Stands for a tenant's credential; the pipeline never calls it (the Graph client does)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("the pipeline must not ask for tokens")


def directory(built: list[str] | None = None, served: Any = None) -> TenantDirectory:
    """Home plus two served tenants (or `served`); `built` records every cross-tenant credential made."""

    def cross_tenant(tenant_id: str) -> Any:
        (built if built is not None else []).append(tenant_id)
        return NamedCredential(tenant_id)

    return TenantDirectory(
        home_credential=NamedCredential("home"), home_tenant_id=HOME_TENANT,
        served=served or Served(SERVED, None, paused_recheck_seconds=30),
        cross_tenant_credential=cross_tenant, pacer=lambda _: WritePacer(10, 1.0),
    )  # fmt: skip


def home_only(credential: Any, pacer: WritePacer) -> TenantDirectory:
    """The home tenant alone, with this credential and pacer (for tests that wire a real GraphClient)."""
    return TenantDirectory(
        home_credential=credential, home_tenant_id=None, served=Served((), None, paused_recheck_seconds=30),
        cross_tenant_credential=lambda _: credential,
        pacer=lambda _: pacer,
    )  # fmt: skip


def body(**overrides: Any) -> bytes:
    document = {
        "correlationId": "order-4711",
        "profileType": "iosScepCertificateProfile",
        "deviceConfigurationId": "cfg-1",
        "managedDeviceCertificateStateId": "state-1",
        "update": {"certificateKeyUsage": "digitalSignature", "certificateThumbprint": SECRET_VALUE},
        **overrides,
    }
    return json.dumps(document).encode()
