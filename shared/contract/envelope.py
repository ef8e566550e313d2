"""The deferral envelope: a message put back on the input queue by the function itself.

A deferred message (docs/design.md, "Deferral") comes back as a new queue message, so it has a new
queue id and a dequeue count starting at 1. The envelope carries what must survive that: the original
messageId (the outcome's key for consumers and the audit trail), the failed deliveries so far (so the
last-delivery rule still counts every real failure), when deferring began (so waiting is bounded) and
the warnings the outcome must still carry (a capped Retry-After met before the deferral).
The original document travels inside as it was decoded; nothing else about it changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from shared.contract.errors import ErrorCode, MessageRejected

ENVELOPE_KEY: Final = "certstateDeferral"


@dataclass(frozen=True)
class DeferralRecord:
    """What a deferred message carries about its own history."""

    message_id: str
    failed_deliveries: int
    deferrals: int
    deferred_since: datetime
    warnings: tuple[str, ...] = ()


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # pydantic-core compiles patterns with Rust regex, where $ is the true end (no final-newline match).
    messageId: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9-]{1,128}$")]  # noqa: N815 - wire name
    failedDeliveries: Annotated[StrictInt, Field(ge=0, le=10_000)]  # noqa: N815
    deferrals: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    deferredSince: datetime  # noqa: N815
    warnings: Annotated[list[Annotated[StrictStr, Field(max_length=1000)]], Field(max_length=10)] = []


def wrap(document: dict[str, Any], record: DeferralRecord) -> str:
    """The queue text of a deferred message: compact JSON, the original document unchanged inside."""
    since = record.deferred_since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    envelope = {
        ENVELOPE_KEY: {
            "messageId": record.message_id,
            "failedDeliveries": record.failed_deliveries,
            "deferrals": record.deferrals,
            "deferredSince": since,
            **({"warnings": list(record.warnings)} if record.warnings else {}),
        },
        "message": document,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))


def unwrap(document: dict[str, Any]) -> tuple[dict[str, Any], DeferralRecord | None]:
    """The original document and its record, or the document itself when it is not an envelope."""
    if ENVELOPE_KEY not in document:
        return document, None
    inner = document.get("message")
    if set(document) != {ENVELOPE_KEY, "message"} or not isinstance(inner, dict):
        raise MessageRejected(code=ErrorCode.MALFORMED_MESSAGE, message=f"{ENVELOPE_KEY}: not a deferral envelope")
    try:
        raw = _Record.model_validate_json(json.dumps(document[ENVELOPE_KEY]))
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MessageRejected(
            code=ErrorCode.MALFORMED_MESSAGE, message=f"{ENVELOPE_KEY}.{where}: {first['msg']}"
        ) from None
    since = raw.deferredSince if raw.deferredSince.tzinfo else raw.deferredSince.replace(tzinfo=UTC)
    return inner, DeferralRecord(raw.messageId, raw.failedDeliveries, raw.deferrals, since, tuple(raw.warnings))
