"""The error hierarchy, shaped by what the queue must do with the message.

`PermanentError`: retrying cannot help, so the message gets its outcome and completes.
`TransientError`: the same message may succeed later, so it goes back to the queue (the
host redelivers it after `visibilityTimeout`) until its last delivery, which reports it.
`DeferralRequested`: the message should wait without spending a delivery (an open breaker, a tenant
with no write slot soon): the pipeline puts it back on the queue with that delay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable `error.code` values of the outcome (documented in docs/outcomes.md)."""

    MALFORMED_MESSAGE = "malformedMessage"
    VALIDATION_FAILED = "validationFailed"
    MESSAGE_EXPIRED = "messageExpired"
    GRAPH_BAD_REQUEST = "graphBadRequest"
    GRAPH_UNAUTHORIZED = "graphUnauthorized"
    GRAPH_FORBIDDEN = "graphForbidden"
    GRAPH_NOT_FOUND = "graphNotFound"
    GRAPH_CONFLICT = "graphConflict"
    GRAPH_REQUEST_FAILED = "graphRequestFailed"
    GRAPH_THROTTLED = "graphThrottled"
    GRAPH_UNAVAILABLE = "graphUnavailable"
    CREDENTIAL_UNAVAILABLE = "credentialUnavailable"
    TENANT_NOT_ALLOWED = "tenantNotAllowed"
    TENANT_PAUSED = "tenantPaused"
    REGISTRY_UNAVAILABLE = "registryUnavailable"
    TENANT_NOT_CONSENTED = "tenantNotConsented"
    APP_ROLE_MISSING = "appRoleMissing"
    UNKNOWN_DEFERRAL = "unknownDeferral"
    DUPLICATE_DEFERRAL = "duplicateDeferral"
    DEFERRAL_UNAVAILABLE = "deferralUnavailable"
    INTERNAL_ERROR = "internalError"


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a message, by its dotted wire name."""

    field: str
    message: str


@dataclass(frozen=True)
class GraphTrace:
    """What support needs to find a request in Graph's logs."""

    request_id: str | None = None
    client_request_id: str | None = None
    date: str | None = None
    diagnostic: str | None = None


@dataclass
class CertStateError(Exception):
    """Base of every error the pipeline turns into an outcome or a retry."""

    code: ErrorCode
    message: str
    details: Sequence[FieldError] = ()
    graph_code: str | None = None
    http_status: int | None = None
    trace: GraphTrace = field(default_factory=GraphTrace)
    attempts: int = 0
    warnings: Sequence[str] = ()  # for the outcome, e.g. a Retry-After that was capped

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class PermanentError(CertStateError):
    """The message can never succeed as it is: report it and complete it."""


class MessageRejected(PermanentError):
    """The message is malformed or invalid (outcome status `rejected`)."""


class MessageExpired(PermanentError):
    """The message's `expiresAt` passed before it was processed (outcome status `expired`)."""


class GraphRefused(PermanentError):
    """Graph answered with a status that retrying will not change (outcome status `failed`)."""


class TransientError(CertStateError):
    """Graph or the identity endpoint may answer later: hand the message back to the queue."""


class DeferralReason(StrEnum):
    """Why a message asked to wait (the `reason` of its `deferred` log line, and of a `failed` outcome's message)."""

    BREAKER_OPEN = "breakerOpen"  # Graph or the token path is failing: the circuit breaker holds requests
    WRITE_BUDGET = "writeBudget"  # the tenant's write budget has no slot soon
    RETRY_AFTER = "retryAfter"  # a Retry-After holds the tenant's writes for longer than the short wait
    TENANT_PAUSED = "tenantPaused"  # the registry pauses the tenant


@dataclass
class DeferralRequested(Exception):
    """Not an error of the message: it should come back after `delay_seconds` (`reason` says why).

    `cause` is what the message would be reported with if it waits too long (the outage's code);
    `warnings` travel with the deferred copy to the outcome it ends with (e.g. a capped Retry-After).
    """

    delay_seconds: float
    reason: DeferralReason
    cause: ErrorCode = ErrorCode.GRAPH_UNAVAILABLE
    warnings: tuple[str, ...] = ()
    slot: float | None = None  # the write slot booked for the copy (wall-clock seconds), kept in its record

    def __str__(self) -> str:
        return f"deferred {self.delay_seconds:.1f} s: {self.reason}"
