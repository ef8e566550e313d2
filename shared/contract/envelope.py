"""The deferral envelope and record: a message put back on the input queue by the function itself.

A deferred message (docs/design.md, "Outages: the breaker and deferral") comes back as a new queue
message, with a new queue id and a dequeue count starting at 1. What must survive that (the failed
deliveries so far, when deferring began, which deferral this is) is kept by the function in a
`DeferralRecord` in its own table (shared/deferrals.py), never in the message: anyone who may send to
the input queue can write an envelope. The envelope only names the record (messageId and the day that
locates it), the deferral it belongs to with that deferral's token, and the warnings the outcome must
still carry. Tokens are derived from a random key only the record holds (HMAC-SHA256 of messageId and
deferral number), so the record vouches for every copy it ever sent, a stale one too, and for nothing else.
The original document travels inside as it was decoded; nothing else about it changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from shared.contract.audit import day_key
from shared.contract.errors import ErrorCode, MessageRejected

ENVELOPE_KEY: Final = "certstateDeferral"
MAX_DEFERRALS: Final = 1_000_000


@dataclass(frozen=True)
class Envelope:
    """What a deferred copy says about itself: which message, which deferral, where its record is."""

    message_id: str
    deferral: int
    token: str
    day: str  # `YYYYMMDD` the original was enqueued: only locates the record
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeferralRecord:
    """The function's own account of a deferred message: the only source of its history.

    `deferral` counts the deferrals; `key` is the message's secret, from which each deferral's token
    (which only its copy carries) is derived.
    `failed_deliveries` are the failed deliveries before the delivery that holds this deferral;
    `written_by` is the queue message id of the delivery that wrote it (its carrier), with its own
    `writer_failed_deliveries`; `claimed_by` the queue message id that holds it now ("": nobody yet).
    `etag` is the table's, for the conditional write that changes it (None: not stored yet).
    """

    message_id: str
    enqueued_at: datetime  # when the original was enqueued: the audit partition, and the record's day
    since: datetime  # when deferring began: DEFERRAL_MAX_SECONDS counts from here
    deferral: int
    key: str = field(repr=False)  # a secret: never in a log line
    failed_deliveries: int
    written_by: str
    writer_failed_deliveries: int
    claimed_by: str = ""
    etag: str | None = None
    slot: float | None = None  # the write slot booked for this deferral's copy: trusted only from the record

    @property
    def day(self) -> str:
        """The day that locates the record (the original's enqueue day)."""
        return day_key(self.enqueued_at)

    @property
    def token(self) -> str:
        """The token of the current deferral, for its copy's envelope."""
        return deferral_token(self.key, self.message_id, self.deferral)

    def sent(self, envelope: Envelope) -> bool:
        """Whether `envelope` is a copy the function sent for this message (this deferral or an earlier one)."""
        if not 1 <= envelope.deferral <= self.deferral:
            return False
        return hmac.compare_digest(envelope.token, deferral_token(self.key, self.message_id, envelope.deferral))


def deferral_token(key: str, message_id: str, deferral: int) -> str:
    """The token of one deferral: only who holds the record's key can make it."""
    digest = hmac.new(key.encode(), f"{message_id}|{deferral}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


class RecordChanged(Exception):
    """Another delivery wrote the deferral record since it was read (or created it first)."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # pydantic-core compiles patterns with Rust regex, where $ is the true end (no final-newline match).
    messageId: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9-]{1,128}$")]  # noqa: N815 - wire name
    deferral: Annotated[StrictInt, Field(ge=1, le=MAX_DEFERRALS)]
    token: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{16,128}$")]
    day: Annotated[StrictStr, Field(pattern=r"^[0-9]{8}$")]
    warnings: Annotated[list[Annotated[StrictStr, Field(max_length=1000)]], Field(max_length=10)] = []


def wrap(document: dict[str, Any], envelope: Envelope) -> str:
    """The queue text of a deferred message: compact JSON, the original document unchanged inside."""
    wire = {
        ENVELOPE_KEY: {
            "messageId": envelope.message_id,
            "deferral": envelope.deferral,
            "token": envelope.token,
            "day": envelope.day,
            **({"warnings": list(envelope.warnings)} if envelope.warnings else {}),
        },
        "message": document,
    }
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":"))


def unwrap(document: dict[str, Any]) -> tuple[dict[str, Any], Envelope | None]:
    """The original document and its envelope, or the document itself when it is not an envelope.

    Any value in an envelope either passes the model or is `malformedMessage`: nothing else is raised.
    """
    if ENVELOPE_KEY not in document:
        return document, None
    inner = document.get("message")
    if set(document) != {ENVELOPE_KEY, "message"} or not isinstance(inner, dict):
        raise MessageRejected(code=ErrorCode.MALFORMED_MESSAGE, message=f"{ENVELOPE_KEY}: not a deferral envelope")
    try:
        wire = _Wire.model_validate(document[ENVELOPE_KEY])
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MessageRejected(
            code=ErrorCode.MALFORMED_MESSAGE, message=f"{ENVELOPE_KEY}{'.' + where if where else ''}: {first['msg']}"
        ) from None
    return inner, Envelope(wire.messageId, wire.deferral, wire.token, wire.day, tuple(wire.warnings))
