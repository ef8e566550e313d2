"""The outcome written to the result queue: exactly one per input message (docs/contract.md section 4).

Every outcome fits one queue message: `fit` cuts echoed values, in a documented order, until the
JSON text does, and names what it cut in `truncated` (docs/outcomes.md, "Size").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_serializer
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticSerializationError

from shared.contract.echo import bounded, escaped, printable

SCHEMA_VERSION: Final = 1


class Status(StrEnum):
    """Terminal states of a message."""

    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"
    VALIDATED = "validated"


_OUT = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, frozen=True)

Echoed = Annotated[str, PlainSerializer(escaped, return_type=str)]
"""A value the outcome repeats from the message or from Graph: written with control characters escaped.

Escaped where it is written (`echo.escaped`), so the model keeps the value itself: the audit trail's keys
and summary are what the message named, and `certstate history` finds them by it. `request` and
`graphRequest` are not escaped: they are the message and the PATCH body exactly, for replay and audit.
"""


class Target(BaseModel):
    """The state object the message names (as far as the message could be read)."""

    model_config = _OUT

    tenant_id: Echoed | None = None
    profile_type: Echoed | None = None
    device_configuration_id: Echoed | None = None
    managed_device_certificate_state_id: Echoed | None = None
    via: Echoed | None = None


class GraphInfo(BaseModel):
    """Graph's ids for the last answer, for support cases."""

    model_config = _OUT

    request_id: Echoed | None = None
    client_request_id: Echoed | None = None
    date: Echoed | None = None


class ErrorDetail(BaseModel):
    """One field at fault."""

    model_config = _OUT

    field: Echoed
    message: Echoed


class OutcomeError(BaseModel):
    """Why the message did not succeed; `code` is one of `shared.contract.errors.ErrorCode`."""

    model_config = _OUT

    code: str
    message: Echoed
    details: list[ErrorDetail] = []
    graph_code: Echoed | None = None


class RequestOmitted(BaseModel):
    """Stands in for a `failed` outcome's `request` that did not fit; the audit trail keeps the request.

    Both are of the request as `request` would have held it, as compact JSON in UTF-8 (the form the
    producer library sends, so for its messages they match the queue message byte for byte).
    """

    model_config = _OUT

    bytes: int
    sha256: str  # hex

    @classmethod
    def of(cls, request: dict[str, Any]) -> RequestOmitted:
        """Size and hash of `request` (a decoded message); raises ValueError/RecursionError if it is none."""
        compact = json.dumps(request, ensure_ascii=False, separators=(",", ":"))
        raw = compact.encode("utf-8", "surrogatepass")
        return cls(bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())


class ConsentState(StrEnum):
    """What a consent check found (docs/contract.md section 7)."""

    CONSENTED = "consented"
    NOT_CONSENTED = "notConsented"
    ROLE_MISSING = "roleMissing"


class Consent(BaseModel):
    """A consent check's answer: the state, and Entra ID's AADSTS code when Entra refused the token."""

    model_config = _OUT

    state: ConsentState
    entra_code: Echoed | None = None


class Outcome(BaseModel):
    """What became of one input message."""

    model_config = _OUT

    schema_version: Literal[1] = SCHEMA_VERSION
    status: Status
    correlation_id: Echoed
    message_id: Echoed
    dequeue_count: int
    target: Target
    updated_properties: list[str] = []
    http_status: int | None = None
    graph: GraphInfo | None = None
    attempts: int = 0
    duration_ms: int
    completed_at: datetime
    warnings: list[Echoed] = []
    error: OutcomeError | None = None
    request: dict[str, Any] | None = None
    request_omitted: RequestOmitted | None = None
    graph_request: dict[str, Any] | None = None
    consent: Annotated[Consent | None, Field(exclude_if=lambda value: value is None)] = None
    """Only in a consent check's outcome (v1.2): absent from every other, so v1.1 outcomes are unchanged."""
    truncated: list[str] = []

    @field_serializer("completed_at")
    def _utc_millis(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_json(self) -> str:
        """Raw JSON text for the result queue (`completedAt` in UTC with milliseconds); never raises."""
        try:
            return self.model_dump_json(by_alias=True)
        except PydanticSerializationError:  # a lone surrogate, or an echoed document nested too deep
            return self._salvaged()

    def _salvaged(self) -> str:
        """Field by field: lone surrogates escaped as text; a field that still cannot be written is null."""
        document: dict[str, Any] = {}
        lost: list[str] = []
        for name in type(self).model_fields:
            key = to_camel(name)
            try:
                dumped = self.model_dump(include={name})
                if key not in dumped:  # left out when empty (`consent`)
                    continue
                document[key] = _printable_tree(dumped[key])
                json.dumps(document[key])
            except (PydanticSerializationError, ValueError, RecursionError):
                document[key] = None
                lost.append(key)
        if lost:
            document["truncated"] = [*(document.get("truncated") or []), *lost]
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _printable_tree(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): _printable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_tree(v) for v in value]
    return value


class Result(NamedTuple):
    """What one delivery ends with: the outcome, and its JSON text that fits the result queue."""

    outcome: Outcome
    text: str


def fit(outcome: Outcome, budget: int) -> Result:
    """The outcome and its JSON text, cut until the text takes at most `budget` UTF-8 bytes.

    Serialized once when it fits (the usual case); otherwise the cuts of `_CUTS` apply in order, each
    only while the text is still too large.
    """
    text = outcome.to_json()
    for cut in _CUTS:
        excess = _size(text) - budget
        if excess <= 0:
            return Result(outcome, text)
        outcome = cut(outcome, excess)
        text = outcome.to_json()
    return Result(outcome, text)


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _marked(outcome: Outcome, path: str, **changes: Any) -> Outcome:  # noqa: ANN401 - field values
    return outcome.model_copy(update={**changes, "truncated": [*outcome.truncated, path]})


def _cut_details(outcome: Outcome, excess: int) -> Outcome:
    """Drop details from the end (the summary in `error.message` still counts them all)."""
    error = outcome.error
    if error is None or not error.details:
        return outcome
    details = list(error.details)
    freed = 0
    while details and freed < excess + _MARK_BYTES:
        freed += _size(details.pop().model_dump_json()) + 1
    return _marked(outcome, "error.details", error=error.model_copy(update={"details": details}))


def _cut_request(outcome: Outcome, _excess: int) -> Outcome:
    if outcome.request is None:
        return outcome
    try:
        omitted = RequestOmitted.of(outcome.request)
    except (ValueError, RecursionError):  # not from a decoded message (parsing bounds numbers and depth)
        return _marked(outcome, "request", request=None)
    return _marked(outcome, "request", request=None, request_omitted=omitted)


def _cut_graph_request_body(outcome: Outcome, _excess: int) -> Outcome:
    if outcome.graph_request is None or outcome.graph_request.get("body") is None:
        return outcome
    return _marked(outcome, "graphRequest.body", graph_request={**outcome.graph_request, "body": None})


def _cut_warnings(outcome: Outcome, _excess: int) -> Outcome:
    if not outcome.warnings:
        return outcome
    kept = [bounded(w, _TEXT_CHARS) for w in outcome.warnings[:_MAX_WARNINGS]]
    return _marked(outcome, "warnings", warnings=kept)


def _cut_error_message(outcome: Outcome, _excess: int) -> Outcome:
    error = outcome.error
    if error is None:
        return outcome
    shorter = {"message": bounded(error.message, _TEXT_CHARS), "details": []}
    return _marked(outcome, "error.message", error=error.model_copy(update=shorter))


def bare(outcome: Outcome) -> Outcome:
    """Last resort, for ids nobody expects to be huge: the status and bounded ids, nothing echoed."""
    error = outcome.error
    return Outcome(
        status=outcome.status,
        correlation_id=bounded(outcome.correlation_id, _ID_CHARS),
        message_id=bounded(outcome.message_id, _ID_CHARS),
        dequeue_count=outcome.dequeue_count,
        target=Target(),
        http_status=outcome.http_status,
        attempts=outcome.attempts,
        duration_ms=outcome.duration_ms,
        completed_at=outcome.completed_at,
        error=OutcomeError(code=error.code, message=bounded(error.message, _ID_CHARS)) if error else None,
        request_omitted=outcome.request_omitted,
        consent=outcome.consent,
        truncated=["*"],
    )


_CUTS: Final[tuple[Callable[[Outcome, int], Outcome], ...]] = (
    _cut_details,
    _cut_request,
    _cut_graph_request_body,
    _cut_warnings,
    _cut_error_message,
    lambda outcome, _excess: bare(outcome),
)
"""Echoed values first: the bad values in details, the failed message's request, a dry run's body."""
_MARK_BYTES: Final = 32  # room for the `truncated` entry a cut adds
_TEXT_CHARS: Final = 1000
_ID_CHARS: Final = 256
_MAX_WARNINGS: Final = 10
