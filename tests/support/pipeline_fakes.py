"""Stand-ins the pipeline tests share: a Graph that answers as told, and message bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.contract.errors import GraphTrace
from shared.graph.client import GraphResult
from shared.graph.routes import GraphRequest

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


class RecordingGraph:
    """Answers PATCHes as told and records them (the real client has its own loopback tests)."""

    def __init__(self, *answers: GraphResult | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[GraphRequest] = []

    def patch(self, request: GraphRequest) -> GraphResult:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else ok()
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok() -> GraphResult:
    return GraphResult(status=200, trace=GraphTrace("req-1", "client-1", "Fri, 27 Nov 2026 14:03:11 GMT"), attempts=1)


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
