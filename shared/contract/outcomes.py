"""The outcome written to the result queue: exactly one per input message (docs/contract.md section 4)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, field_serializer
from pydantic.alias_generators import to_camel

SCHEMA_VERSION: Final = 1


class Status(StrEnum):
    """Terminal states of a message."""

    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"
    VALIDATED = "validated"


_OUT = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, frozen=True)


class Target(BaseModel):
    """The state object the message names (as far as the message could be read)."""

    model_config = _OUT

    profile_type: str | None = None
    device_configuration_id: str | None = None
    managed_device_certificate_state_id: str | None = None
    via: str | None = None


class GraphInfo(BaseModel):
    """Graph's ids for the last answer, for support cases."""

    model_config = _OUT

    request_id: str | None = None
    client_request_id: str | None = None
    date: str | None = None


class ErrorDetail(BaseModel):
    """One field at fault."""

    model_config = _OUT

    field: str
    message: str


class OutcomeError(BaseModel):
    """Why the message did not succeed; `code` is one of `shared.contract.errors.ErrorCode`."""

    model_config = _OUT

    code: str
    message: str
    details: list[ErrorDetail] = []
    graph_code: str | None = None


class Outcome(BaseModel):
    """What became of one input message."""

    model_config = _OUT

    schema_version: Literal[1] = SCHEMA_VERSION
    status: Status
    correlation_id: str
    message_id: str
    dequeue_count: int
    target: Target
    updated_properties: list[str] = []
    http_status: int | None = None
    graph: GraphInfo | None = None
    attempts: int = 0
    duration_ms: int
    completed_at: datetime
    warnings: list[str] = []
    error: OutcomeError | None = None
    request: dict[str, Any] | None = None
    graph_request: dict[str, Any] | None = None

    @field_serializer("completed_at")
    def _utc_millis(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_json(self) -> str:
        """Raw JSON text for the result queue (`completedAt` in UTC with milliseconds)."""
        return self.model_dump_json(by_alias=True)
