"""What one delivery knows about its message, and the outcome built from it.

`OutcomeBuilder` follows the delivery as the pipeline learns more (the decoded document, the parsed
message, the Graph request, the deferral record it holds) and builds the outcome from whatever it
reached, so a message rejected half-way still names what it could. Its state changes only through
its own steps (`read`, `parse`, `route`, `hold`, `disown`); callers read it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contract.envelope import ENVELOPE_KEY, DeferralRecord, Envelope, unwrap
from shared.contract.errors import CertStateError, ErrorCode, MessageExpired, MessageRejected
from shared.contract.messages import CORRELATION_ID, UpdateMessage
from shared.contract.outcomes import ErrorDetail, GraphInfo, Outcome, OutcomeError, Status, Target
from shared.contract.parsing import decode_body, parse_message
from shared.graph.routes import GraphRequest, build_request
from shared.logs import log_event

logger = logging.getLogger("certstate")


@dataclass(frozen=True)
class Delivery:
    """What the queue says about this delivery of a message."""

    message_id: str
    dequeue_count: int
    enqueued_at: datetime | None = None  # when the message was first put on the queue (the audit trail's day)


class OutcomeBuilder:
    """Builds the outcome from whatever could be read of the message."""

    def __init__(self, delivery: Delivery) -> None:
        self._own = delivery
        self._delivery = delivery
        self._envelope: Envelope | None = None
        self._held: DeferralRecord | None = None
        self._document: dict[str, Any] | None = None
        self._message: UpdateMessage | None = None
        self._request: GraphRequest | None = None
        self._outer: dict[str, Any] | None = None

    @property
    def own(self) -> Delivery:
        """What the queue says about this queue message."""
        return self._own

    @property
    def delivery(self) -> Delivery:
        """The message's identity: a held copy's is its original's."""
        return self._delivery

    @property
    def envelope(self) -> Envelope | None:
        """The deferral envelope of a copy (its word only, until the record vouches for it)."""
        return self._envelope

    @property
    def held(self) -> DeferralRecord | None:
        """The deferral record this delivery holds, if any."""
        return self._held

    @property
    def document(self) -> dict[str, Any] | None:
        """The decoded message (inside its envelope), None when the body could not be decoded."""
        return self._document

    @property
    def message(self) -> UpdateMessage | None:
        """The validated update message, once `parse` succeeded."""
        return self._message

    def read(self, body: bytes) -> MessageRejected | None:
        """Decode the body; a deferred copy keeps its own queue identity until its record vouches for it."""
        try:
            self._outer = decode_body(body)
            self._document, self._envelope = unwrap(self._outer)
        except MessageRejected as err:
            self._document = None
            return err
        return None

    def parse(self) -> UpdateMessage:
        """Validate the document as an update message; the outcome names its target from then on."""
        assert self._document is not None
        self._message = parse_message(self._document)
        return self._message

    def route(self, graph_base_url: str) -> GraphRequest:
        """The Graph request of the parsed message; the outcome names the properties it updates."""
        assert self._message is not None
        self._request = build_request(graph_base_url, self._message)
        return self._request

    def hold(self, record: DeferralRecord) -> None:
        """Hold the message's deferral record: it takes the identity and counts kept there."""
        self._held = record
        self._delivery = Delivery(
            record.message_id,
            record.failed_deliveries + self._own.dequeue_count,
            record.enqueued_at,  # a copy's own enqueue time is not the message's
        )

    def disown(self) -> None:
        """A copy no record vouches for: its outcome names only itself, nothing from inside the envelope."""
        self._held, self._delivery, self._message, self._request = None, self._own, None, None
        self._document = self._outer

    def refuse(self, code: ErrorCode, reason: str) -> MessageRejected:
        """The rejection of a copy the record does not accept (`disown`ed first)."""
        claimed = self._envelope.message_id if self._envelope else None
        log_event(logger, logging.WARNING, "deferralRefused", code=code.value, claimedMessageId=claimed)
        self.disown()
        return MessageRejected(code=code, message=f"{ENVELOPE_KEY}: {reason}")

    @property
    def carried_warnings(self) -> tuple[str, ...]:
        """The warnings a held copy brought from before its deferral (an unheld one's are not trusted)."""
        return self._envelope.warnings if self._envelope is not None and self._held is not None else ()

    def last_delivery(self, max_dequeue_count: int) -> bool:
        """True when the host would poison the message if this delivery failed too."""
        return self._delivery.dequeue_count >= max_dequeue_count

    @property
    def correlation_id(self) -> str:
        """The producer's id when it is valid, even if the rest of the message is not."""
        if self._message is not None:
            return self._message.correlation_id or self._delivery.message_id
        given = (self._document or {}).get("correlationId")
        if isinstance(given, str) and CORRELATION_ID.fullmatch(given):
            return given
        return self._delivery.message_id

    def _target(self) -> Target:
        """The named target; for a rejected message, whatever strings it gave (capped), to help find it."""
        if self._message is not None:
            m = self._message
            return Target(
                tenant_id=m.tenant_id,
                profile_type=m.profile_type,
                device_configuration_id=m.device_configuration_id,
                managed_device_certificate_state_id=m.managed_device_certificate_state_id,
                via=m.via,
            )
        document = self._document or {}
        return Target.model_validate(
            {key: value[:256] for key in _TARGET_FIELDS if isinstance(value := document.get(key), str)}
        )

    def build(
        self,
        status: Status,
        now: datetime,
        extra_warnings: Sequence[str] = (),
        **fields: Any,  # noqa: ANN401
    ) -> Outcome:
        """The outcome with this delivery's identity and whatever could be read of the message."""
        message, request = self._message, self._request
        return Outcome(
            status=status,
            correlation_id=self.correlation_id,
            message_id=self._delivery.message_id,
            dequeue_count=self._delivery.dequeue_count,
            target=self._target(),
            updated_properties=[name for name in request.body if not name.startswith("@")]  # "@": annotations
            if request and status in _NAMES_PROPERTIES
            else [],
            warnings=each_once(
                message.warnings if message else (),
                self.carried_warnings,
                extra_warnings,
            ),
            duration_ms=0,  # set by the pipeline when the outcome is final
            completed_at=now,
            **fields,
        )

    def error(self, err: CertStateError, now: datetime) -> Outcome:
        """The outcome for an error: its status by kind, the original request when it `failed`."""
        status = (
            Status.REJECTED
            if isinstance(err, MessageRejected)
            else Status.EXPIRED
            if isinstance(err, MessageExpired)
            else Status.FAILED
        )
        trace = err.trace
        return self.build(
            status,
            now,
            http_status=err.http_status,
            graph=GraphInfo(request_id=trace.request_id, client_request_id=trace.client_request_id, date=trace.date)
            if trace.client_request_id
            else None,
            attempts=err.attempts,
            error=OutcomeError(
                code=err.code.value,
                message=err.message,
                details=[ErrorDetail(field=d.field, message=d.message) for d in err.details],
                graph_code=err.graph_code,
            ),
            request=self._document if status is Status.FAILED else None,
            extra_warnings=err.warnings,
        )


_NAMES_PROPERTIES = frozenset({Status.SUCCEEDED, Status.VALIDATED})
_TARGET_FIELDS = ("tenantId", "profileType", "deviceConfigurationId", "managedDeviceCertificateStateId", "via")


def each_once(*groups: Sequence[str]) -> list[str]:
    """The warnings of every group, in order, each once (a Retry-After capped on several attempts)."""
    return list(dict.fromkeys(warning for group in groups for warning in group))
