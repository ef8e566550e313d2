"""Hand-made messages and outcomes for the producer and CLI tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from devstack.azurite import connection_string
from shared.contract.errors import ErrorCode
from shared.contract.outcomes import Outcome, OutcomeError, Status, Target

IOS_CONFIG = "b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11"
IOS_STATE = "d99bc884-c884-d99b-84c8-9bd984c89bd9"


def request(correlation_id: str = "order-4711", **update: Any) -> dict[str, Any]:
    """A valid input message as a JSON object."""
    return {
        "correlationId": correlation_id,
        "profileType": "iosScepCertificateProfile",
        "deviceConfigurationId": IOS_CONFIG,
        "managedDeviceCertificateStateId": IOS_STATE,
        "update": update or {"certificateKeyUsage": "digitalSignature"},
    }


def outcome_json(
    status: Status,
    correlation_id: str,
    message_id: str,
    *,
    error_code: ErrorCode | None = None,
    with_request: bool = True,
    completed_at: datetime = datetime(2026, 11, 27, 14, 3, 11, 402000, tzinfo=UTC),
    tenant_id: str | None = None,
    warnings: tuple[str, ...] = (),
) -> str:
    """An outcome as the function writes it (same model), for results/replay to read."""
    failed = status is Status.FAILED
    text = Outcome(
        status=status,
        correlation_id=correlation_id,
        message_id=message_id,
        dequeue_count=5 if failed else 1,
        target=Target(
            profile_type="iosScepCertificateProfile",
            device_configuration_id=IOS_CONFIG,
            managed_device_certificate_state_id=IOS_STATE,
        ),
        updated_properties=["certificateKeyUsage"],
        http_status=429 if failed else 200,
        attempts=4 if failed else 1,
        duration_ms=182,
        completed_at=completed_at,
        warnings=list(warnings),
        error=OutcomeError(code=error_code, message="Graph said no") if error_code else None,
        request=request(correlation_id) if failed and with_request else None,
    ).to_json()
    if tenant_id is None:
        return text
    document = json.loads(text)  # target.tenantId as the contract (v1.1) writes it
    document["target"]["tenantId"] = tenant_id
    return json.dumps(document)


def unreachable_connection_string(port: int) -> str:
    """Azurite's account on a port nobody listens on."""
    return connection_string(port)
