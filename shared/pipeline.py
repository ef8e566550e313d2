"""One queue message in, exactly one outcome out (or a retry, until the last delivery; or a deferral).

`CertStatePipeline.handle` is what the function calls. It returns the outcome with its JSON
text, already cut to fit the result queue, or raises `TransientError` so the host hands the
message back to the queue. On the message's last delivery a transient failure becomes a
`failed` outcome instead, so no message is poisoned without one, and no delivery ever yields two.
A message that asks for a deferral (`DeferralRequested`: an open breaker, a tenant without a write
slot soon) goes back on the queue as a delayed copy that keeps its identity
(`shared.contract.envelope`), and this delivery writes nothing: `handle` returns None. The deferral
is first written to the deferral record (`DeferralStore`), then the copy is sent; a copy is accepted
only when it matches the record, and claims it, so of a copy and a redelivery of its carrier exactly
one goes on (docs/design.md).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from shared.contract.audit import day_key
from shared.contract.envelope import ENVELOPE_KEY, DeferralRecord, Envelope, RecordChanged, unwrap, wrap
from shared.contract.errors import (
    CertStateError,
    DeferralRequested,
    ErrorCode,
    GraphRefused,
    MessageExpired,
    MessageRejected,
    PermanentError,
    TransientError,
)
from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.contract.messages import CHECK_KEY, CORRELATION_ID, UpdateMessage, to_datetime
from shared.contract.outcomes import (
    Consent,
    ConsentState,
    ErrorDetail,
    GraphInfo,
    Outcome,
    OutcomeError,
    Status,
    Target,
    bare,
    fit,
)
from shared.contract.parsing import decode_body, parse_check, parse_message
from shared.graph.client import GraphResult
from shared.graph.consent import ConsentResult
from shared.graph.routes import GraphRequest, build_request
from shared.graph.tenancy import Tenant
from shared.logs import log_event, message_context
from shared.telemetry import Telemetry

logger = logging.getLogger("certstate")

MAX_VISIBILITY_DELAY_SECONDS = 7 * 24 * 3600
"""Queue Storage's limit on a message's initial invisibility."""


@dataclass(frozen=True)
class Delivery:
    """What the queue says about this delivery of a message."""

    message_id: str
    dequeue_count: int
    enqueued_at: datetime | None = None  # when the message was first put on the queue (the audit trail's day)


@dataclass(frozen=True)
class Result:
    """What one delivery ends with: the outcome, and its JSON text that fits the result queue."""

    outcome: Outcome
    text: str


class GraphPatcher(Protocol):
    """The part of `GraphClient` the pipeline needs (tests may pass a loopback-backed one)."""

    def patch(self, request: GraphRequest, tenant: Tenant, booked: float | None = None) -> GraphResult: ...  # noqa: D102


class TenantLookup(Protocol):
    """The part of `TenantDirectory` the pipeline needs: a served tenant, or `tenantNotAllowed`."""

    def tenant(self, tenant_id: str | None, *, paused_ok: bool = False) -> Tenant: ...  # noqa: D102


ConsentChecker = Callable[[Tenant], ConsentResult]
"""Runs a consent check for a served tenant (`shared.graph.consent.check_consent`, wired)."""


class AuditSink(Protocol):
    """Where outcomes are kept beyond the result queue (`shared.audit.AuditTrail`)."""

    def record(self, result: Result, body: bytes, enqueued_at: datetime | None) -> None: ...  # noqa: D102


Requeue = Callable[[str, int], None]
"""Put queue text back on the input queue, invisible for the given whole seconds (once: no SDK retry)."""


class DeferralStore(Protocol):
    """Where deferral records are kept (`shared.deferrals.DeferralRecords`); every write is conditional."""

    def find(self, message_id: str, day: str) -> DeferralRecord | None: ...  # noqa: D102

    def save(self, record: DeferralRecord, replacing: DeferralRecord | None) -> DeferralRecord:  # noqa: D102
        ...


class Verdict(Enum):
    """What a delivery may do, given the deferral record of its message (`verdict`)."""

    PROCEED = "proceed"  # an original with no record: never deferred
    HOLD = "hold"  # this delivery already holds the record
    CLAIM = "claim"  # this delivery may take the record (conditionally)
    SUPERSEDED = "superseded"  # this delivery deferred the message, and its copy took over
    DUPLICATE = "duplicate"  # a copy the function sent that must not go on: stale, or held by another
    UNKNOWN = "unknown"  # a copy no record vouches for: forged, or its record purged


def verdict(record: DeferralRecord | None, envelope: Envelope | None, queue_id: str) -> Verdict:
    """Decide from the record alone who may hold it.

    Only a copy carrying a token the record's key made, or the delivery that wrote the record (its
    queue id is the service's, not the message's word), may take it; of the function's own copies,
    only the one of the current deferral, and only while nobody holds it.
    """
    if record is None:
        return Verdict.UNKNOWN if envelope is not None else Verdict.PROCEED
    if record.claimed_by == queue_id:
        return Verdict.HOLD
    if record.written_by == queue_id or envelope is None:  # an original with a record: it lives on in a copy
        return Verdict.CLAIM if record.written_by == queue_id and not record.claimed_by else Verdict.SUPERSEDED
    if not record.sent(envelope):
        return Verdict.UNKNOWN
    stale_or_taken = envelope.deferral < record.deferral or bool(record.claimed_by)
    return Verdict.DUPLICATE if stale_or_taken else Verdict.CLAIM


class _Superseded(Exception):
    """The delivery's message goes on in the copy it sent; it ends with no outcome of its own."""


class CertStatePipeline:
    """Validate, resolve, PATCH, report."""

    def __init__(
        self,
        *,
        graph: GraphPatcher,
        tenants: TenantLookup,
        graph_base_url: str,
        max_dequeue_count: int,
        requeue: Requeue | None = None,
        deferrals: DeferralStore | None = None,
        max_deferral_seconds: float = 3600.0,
        outcome_budget: int = QUEUE_MESSAGE_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timer: Callable[[], float] = time.monotonic,
        telemetry: Telemetry | None = None,
        audit: AuditSink | None = None,
        key: Callable[[], str] = lambda: secrets.token_urlsafe(32),
        consent: ConsentChecker | None = None,
        tenant_name: Callable[[str | None], str | None] = lambda tenant_id: None,
    ) -> None:
        self._graph = graph
        self._consent = consent
        self._tenant_name = tenant_name  # the registry's display name, for the outcome log line (no storage call)
        self._telemetry = telemetry or Telemetry()
        self._audit = audit
        self._tenants = tenants
        self._base_url = graph_base_url
        self._max_dequeue_count = max_dequeue_count
        self._requeue = requeue
        self._deferrals = deferrals
        self._key = key  # a new message's secret, from which its copies' tokens are derived
        self._max_deferral = timedelta(seconds=max_deferral_seconds)
        self._outcome_budget = outcome_budget  # UTF-8 bytes of JSON text (limits.outcome_budget)
        self._clock = clock
        self._timer = timer

    def handle(self, body: bytes, delivery: Delivery) -> Result | None:
        """Process one delivery; raise `TransientError` to have it redelivered, None when deferred."""
        started = self._timer()
        report = OutcomeBuilder(delivery)
        unreadable = report.read(body)
        outcome: Outcome | None
        with (
            self._telemetry.message_span(report.delivery.message_id, report.delivery.dequeue_count),
            message_context(messageId=report.delivery.message_id, dequeueCount=report.delivery.dequeue_count),
        ):
            try:
                try:
                    outcome = self._process(report, unreadable)
                except DeferralRequested as deferral:  # what goes wrong while deferring is handled as below
                    outcome = self._defer(deferral, report)
                except _Superseded:
                    outcome = self._superseded(report)
            except PermanentError as err:
                outcome = report.error(err, self._clock())
            except TransientError as err:
                outcome = self._retry_or_report(err, report)
            except Exception as err:  # a bug must not lose the message: retry, then report
                logger.exception("unexpected error")
                if not report.last_delivery(self._max_dequeue_count):
                    self._telemetry.handed_back(None, report.correlation_id)
                    raise
                internal = CertStateError(code=ErrorCode.INTERNAL_ERROR, message=type(err).__name__)
                outcome = report.error(internal, self._clock())
            if outcome is None:
                return None
            outcome = outcome.model_copy(update={"duration_ms": self._elapsed(started)})
            try:
                outcome, text = fit(outcome, self._outcome_budget)
            except Exception:  # a bug here must not cost the outcome: its bare form always fits
                logger.exception("outcome could not be fitted")
                outcome, text = fit(bare(outcome), self._outcome_budget)
            log_event(logger, logging.INFO if outcome.status is not Status.FAILED else logging.WARNING, "outcome",
                      messageId=outcome.message_id, dequeueCount=outcome.dequeue_count,
                      correlationId=outcome.correlation_id, tenantId=outcome.target.tenant_id,
                      tenantName=(name := self._tenant_name(outcome.target.tenant_id)), status=outcome.status.value,
                      code=outcome.error.code if outcome.error else None, httpStatus=outcome.http_status,
                      requestId=outcome.graph.request_id if outcome.graph else None,
                      attempts=outcome.attempts, durationMs=outcome.duration_ms,
                      truncated=outcome.truncated or None)  # fmt: skip
            self._telemetry.outcome(outcome, name)
            result = Result(outcome, text)
            self._record(result, body, report.delivery)
            return result

    def _record(self, result: Result, body: bytes, delivery: Delivery) -> None:
        """Keep the outcome in the audit trail; a failure is reported, and never holds the outcome back."""
        if self._audit is None:
            return
        outcome = result.outcome
        try:
            self._audit.record(result, body, delivery.enqueued_at)
        except Exception as err:  # whatever broke, the outcome must still go out
            log_event(logger, logging.ERROR, "auditFailed", correlationId=outcome.correlation_id,
                      status=outcome.status.value, reason=type(err).__name__)  # fmt: skip
            self._telemetry.audit_failed(type(err).__name__)

    def _process(self, report: OutcomeBuilder, unreadable: MessageRejected | None) -> Outcome:
        if unreadable is not None:
            raise unreadable
        self._admit(report)
        with message_context(messageId=report.delivery.message_id, dequeueCount=report.delivery.dequeue_count):
            return self._apply(report)

    def _apply(self, report: OutcomeBuilder) -> Outcome:
        assert report.document is not None
        if CHECK_KEY in report.document:
            return self._check(report)
        message = parse_message(report.document)
        report.message = message
        tenant = self._tenants.tenant(message.tenant_id)  # before anything could ask for a token
        request = build_request(self._base_url, message)
        report.request = request
        now = self._clock()
        if message.expires_at is not None and now > to_datetime(message.expires_at):
            raise MessageExpired(code=ErrorCode.MESSAGE_EXPIRED, message=f"expired at {message.expires_at}")
        if message.dry_run:
            return report.build(Status.VALIDATED, now, graph_request=request.as_dict())
        tenant_field = {"tenantId": message.tenant_id} if message.tenant_id else {}
        # A held copy's booked write slot comes from its record, never from the envelope.
        booked = {"booked": report.held.slot} if report.held is not None and report.held.slot is not None else {}
        with message_context(correlationId=report.correlation_id, **tenant_field):
            result = self._graph.patch(request, tenant, **booked)
        return report.build(
            Status.SUCCEEDED,
            self._clock(),
            http_status=result.status,
            graph=GraphInfo(
                request_id=result.trace.request_id,
                client_request_id=result.trace.client_request_id,
                date=result.trace.date,
            ),
            attempts=result.attempts,
            extra_warnings=result.warnings,
        )

    def _check(self, report: OutcomeBuilder) -> Outcome:
        """A consent check: `validated` when consented, else `failed` with what is missing; never a Graph write.

        A paused tenant is checked too (pausing is how a tenant waits for its consent).
        """
        assert report.document is not None
        check = parse_check(report.document)
        tenant = self._tenants.tenant(check.tenant_id, paused_ok=True)  # before anything could ask for a token
        if self._consent is None:
            raise MessageRejected(code=ErrorCode.VALIDATION_FAILED, message="check: this deployment runs no checks")
        with message_context(correlationId=report.correlation_id, tenantId=check.tenant_id):
            result = self._consent(tenant)
        consent = Consent(state=result.state, entra_code=result.entra_code)
        named = {"target": Target(tenant_id=check.tenant_id), "consent": consent}  # the tenant in lower case
        if result.state is ConsentState.CONSENTED:
            return report.build(Status.VALIDATED, self._clock(), http_status=result.http_status).model_copy(
                update=named
            )
        code = (
            ErrorCode.TENANT_NOT_CONSENTED if result.state is ConsentState.NOT_CONSENTED else ErrorCode.APP_ROLE_MISSING
        )
        refused = GraphRefused(
            code=code, message=result.message, graph_code=result.graph_code, http_status=result.http_status
        )
        return report.error(refused, self._clock()).model_copy(update=named)

    def _retry_or_report(self, err: TransientError, report: OutcomeBuilder) -> Outcome:
        """Hand the message back to the host, or report it on its last delivery."""
        if not report.last_delivery(self._max_dequeue_count):
            log_event(logger, logging.WARNING, "retryLater", messageId=report.delivery.message_id,
                      dequeueCount=report.delivery.dequeue_count, correlationId=report.correlation_id,
                      code=err.code.value, httpStatus=err.http_status, requestId=err.trace.request_id,
                      attempts=err.attempts)  # fmt: skip
            self._telemetry.handed_back(err, report.correlation_id)
            raise err
        return report.error(err, self._clock())

    def _admit(self, report: OutcomeBuilder) -> None:
        """Let the delivery go on only if the deferral record allows it (see `verdict`).

        A first delivery of an original costs no table call (it cannot have a record yet); a copy
        or a redelivered original reads its record and claims it when it may.
        """
        envelope, own = report.envelope, report.own
        if envelope is None and (own.dequeue_count <= 1 or self._deferrals is None):
            return
        if envelope is not None and self._deferrals is None:
            raise report.refuse(ErrorCode.UNKNOWN_DEFERRAL, "this deployment keeps no deferral records")
        assert self._deferrals is not None
        message_id = envelope.message_id if envelope else own.message_id
        day = envelope.day if envelope else day_key(own.enqueued_at or self._clock())
        for _ in range(2):  # a claim lost to a concurrent delivery: decide again on what it wrote
            try:
                record = self._deferrals.find(message_id, day)
            except Exception as err:  # the table is down or slow: the host retries this delivery
                self._unavailable(report, "read", err)
                return
            decided = verdict(record, envelope, own.message_id)
            if decided is Verdict.PROCEED:
                return
            if decided is Verdict.UNKNOWN:
                raise report.refuse(ErrorCode.UNKNOWN_DEFERRAL, "no deferral record matches this copy")
            if decided is Verdict.DUPLICATE:
                raise report.refuse(ErrorCode.DUPLICATE_DEFERRAL, "another delivery holds this deferral")
            if decided is Verdict.SUPERSEDED:
                raise _Superseded
            assert record is not None
            if decided is Verdict.CLAIM:
                base = record.writer_failed_deliveries if record.written_by == own.message_id else None
                try:
                    record = self._claim(record, own.message_id, base)
                except RecordChanged:
                    continue
                except Exception as err:
                    self._unavailable(report, "claimed", err)
                    return
            report.hold(record)
            return
        self._unavailable(report, "claimed", RecordChanged("changed twice"))

    def _claim(self, record: DeferralRecord, queue_id: str, failed_before: int | None) -> DeferralRecord:
        """Take the record for this delivery; the writer taking its own back resumes its own count."""
        failed = record.failed_deliveries if failed_before is None else failed_before
        return self._deferrals_store().save(replace(record, claimed_by=queue_id, failed_deliveries=failed), record)

    def _deferrals_store(self) -> DeferralStore:
        assert self._deferrals is not None
        return self._deferrals

    def _unavailable(self, report: OutcomeBuilder, step: str, err: Exception) -> None:
        """The record could not be read or claimed: hand the delivery back, or go on without the record.

        A copy speaks only for itself meanwhile. A redelivered original on its last delivery goes on:
        it is the message itself, better applied than failed for the table.
        """
        proceeding = report.envelope is None and report.last_delivery(self._max_dequeue_count)
        log_event(logger, logging.WARNING, "deferralRecordFailed", step=step, reason=type(err).__name__,
                  proceeding=proceeding or None)  # fmt: skip
        if proceeding:
            return
        if report.envelope is not None:
            report.disown()
        raise TransientError(code=ErrorCode.DEFERRAL_UNAVAILABLE, message=f"the deferral record could not be {step}")

    def _superseded(self, report: OutcomeBuilder) -> Outcome | None:
        """The message goes on in a copy this delivery sent: a copy ends as a duplicate, an original quietly."""
        log_event(logger, logging.WARNING, "deferralSuperseded", claimedMessageId=report.delivery.message_id)
        if report.envelope is None:
            return None  # its own id is the message's: an outcome here would be a second one
        refused = report.refuse(ErrorCode.DUPLICATE_DEFERRAL, "the copy this delivery sent holds the deferral")
        return report.error(refused, self._clock())

    def _defer(self, deferral: DeferralRequested, report: OutcomeBuilder) -> Outcome | None:
        """Record the deferral, then put the message back with a delay (or report it, if it waited enough).

        The record comes first: a copy is only ever accepted against it. The copy is sent once; if
        its fate is unknown, this delivery takes the record back, so a copy that did land is a duplicate.
        """
        now = self._clock()
        held = report.held
        since = held.since if held else now  # the function's own record, never the message's word
        if (waited_enough := self._waited_enough(deferral, report, now, since)) is not None:
            return waited_enough
        message = report.message
        fallback = TransientError(code=deferral.cause, message=f"{deferral.reason}; the message could not be deferred")
        if self._requeue is None or self._deferrals is None:
            raise fallback
        own = report.own.message_id
        record = DeferralRecord(
            message_id=report.delivery.message_id,
            enqueued_at=held.enqueued_at if held else report.delivery.enqueued_at or now,
            since=since,
            deferral=held.deferral + 1 if held else 1,
            key=held.key if held else self._key(),
            failed_deliveries=report.delivery.dequeue_count - 1,
            written_by=own,
            writer_failed_deliveries=held.failed_deliveries if held else 0,
            slot=deferral.slot,
        )
        carried = _each_once(report.carried_warnings, deferral.warnings)
        envelope = Envelope(record.message_id, record.deferral, record.token, record.day,
                            tuple(carried[:_CARRIED_WARNINGS]))  # fmt: skip
        assert report.document is not None
        text = wrap(report.document, envelope)
        delay = min(MAX_VISIBILITY_DELAY_SECONDS, max(1, math.ceil(deferral.delay_seconds)))
        if len(text.encode("utf-8")) > QUEUE_MESSAGE_BYTES:
            raise fallback
        try:
            written = self._deferrals.save(record, held)
        except Exception as err:  # contested or unreachable: nothing was sent, the host's retry holds
            log_event(logger, logging.WARNING, "deferralFailed", step="record", reason=type(err).__name__)
            raise fallback from None
        try:
            self._requeue(text, delay)
        except Exception as err:  # refused, or unknown (a timeout): the copy may exist
            log_event(logger, logging.WARNING, "deferralFailed", step="copy", reason=type(err).__name__)
            return self._take_back(written, report, fallback)
        log_event(logger, logging.INFO, "deferred", correlationId=report.correlation_id,
                  messageId=report.delivery.message_id, tenantId=message.tenant_id if message else None,
                  reason=deferral.reason, delaySeconds=delay, deferrals=record.deferral,
                  code=deferral.cause.value)  # fmt: skip
        self._telemetry.deferred(deferral.cause.value)
        return None

    def _waited_enough(
        self, deferral: DeferralRequested, report: OutcomeBuilder, now: datetime, since: datetime
    ) -> Outcome | None:
        """The outcome of a message that would expire, or exceed DEFERRAL_MAX_SECONDS, before it came back."""
        comes_back = now + timedelta(seconds=deferral.delay_seconds)
        message = report.message
        if message is not None and message.expires_at is not None and comes_back > to_datetime(message.expires_at):
            expired = MessageExpired(
                code=ErrorCode.MESSAGE_EXPIRED,
                message=f"expires at {message.expires_at}, before it could be sent ({deferral.reason})",
            )
            return report.error(expired, now)
        if comes_back - since > self._max_deferral:
            waited = (now - since).total_seconds()
            gave_up = TransientError(
                code=deferral.cause,
                message=f"{deferral.reason}: waited {waited:.0f} s; DEFERRAL_MAX_SECONDS is "
                f"{self._max_deferral.total_seconds():.0f}",
            )
            return report.error(gave_up, now)
        return None

    def _take_back(self, written: DeferralRecord, report: OutcomeBuilder, fallback: TransientError) -> Outcome | None:
        """After a copy of unknown fate: hold the record again (a copy that landed is then a duplicate)."""
        try:
            report.hold(self._claim(written, report.own.message_id, written.writer_failed_deliveries))
        except RecordChanged:  # the copy landed and claimed it first: the message goes on there
            return self._superseded(report)
        except Exception as err:  # the redelivery takes it back (it wrote the record), or the copy goes on
            log_event(logger, logging.WARNING, "deferralRecordFailed", step="take back", reason=type(err).__name__)
        raise fallback

    def _elapsed(self, started: float) -> int:
        return round((self._timer() - started) * 1000)


class OutcomeBuilder:
    """Builds the outcome from whatever could be read of the message."""

    def __init__(self, delivery: Delivery) -> None:
        self.own = delivery  # what the queue says about this queue message
        self.delivery = delivery  # the message's identity: a held copy's is its original's
        self.envelope: Envelope | None = None
        self.held: DeferralRecord | None = None
        self.document: dict[str, Any] | None = None
        self.message: UpdateMessage | None = None
        self.request: GraphRequest | None = None
        self._outer: dict[str, Any] | None = None

    def read(self, body: bytes) -> MessageRejected | None:
        """Decode the body; a deferred copy keeps its own queue identity until its record vouches for it."""
        try:
            self._outer = decode_body(body)
            self.document, self.envelope = unwrap(self._outer)
        except MessageRejected as err:
            self.document = None
            return err
        return None

    def hold(self, record: DeferralRecord) -> None:
        """Hold the message's deferral record: it takes the identity and counts kept there."""
        self.held = record
        self.delivery = Delivery(
            record.message_id,
            record.failed_deliveries + self.own.dequeue_count,
            record.enqueued_at,  # a copy's own enqueue time is not the message's
        )

    def disown(self) -> None:
        """A copy no record vouches for: its outcome names only itself, nothing from inside the envelope."""
        self.held, self.delivery, self.message, self.request = None, self.own, None, None
        self.document = self._outer

    def refuse(self, code: ErrorCode, reason: str) -> MessageRejected:
        """The rejection of a copy the record does not accept (`disown`ed first)."""
        claimed = self.envelope.message_id if self.envelope else None
        log_event(logger, logging.WARNING, "deferralRefused", code=code.value, claimedMessageId=claimed)
        self.disown()
        return MessageRejected(code=code, message=f"{ENVELOPE_KEY}: {reason}")

    @property
    def carried_warnings(self) -> tuple[str, ...]:
        """The warnings a held copy brought from before its deferral (an unheld one's are not trusted)."""
        return self.envelope.warnings if self.envelope is not None and self.held is not None else ()

    def last_delivery(self, max_dequeue_count: int) -> bool:
        """True when the host would poison the message if this delivery failed too."""
        return self.delivery.dequeue_count >= max_dequeue_count

    @property
    def correlation_id(self) -> str:
        """The producer's id when it is valid, even if the rest of the message is not."""
        if self.message is not None:
            return self.message.correlation_id or self.delivery.message_id
        given = (self.document or {}).get("correlationId")
        if isinstance(given, str) and CORRELATION_ID.fullmatch(given):
            return given
        return self.delivery.message_id

    def _target(self) -> Target:
        """The named target; for a rejected message, whatever strings it gave (capped), to help find it."""
        if self.message is not None:
            m = self.message
            return Target(
                tenant_id=m.tenant_id,
                profile_type=m.profile_type,
                device_configuration_id=m.device_configuration_id,
                managed_device_certificate_state_id=m.managed_device_certificate_state_id,
                via=m.via,
            )
        document = self.document or {}
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
        message = self.message
        return Outcome(
            status=status,
            correlation_id=self.correlation_id,
            message_id=self.delivery.message_id,
            dequeue_count=self.delivery.dequeue_count,
            target=self._target(),
            updated_properties=[name for name in self.request.body if not name.startswith("@")]  # "@": annotations
            if self.request and status in _NAMES_PROPERTIES
            else [],
            warnings=_each_once(
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
            request=self.document if status is Status.FAILED else None,
            extra_warnings=err.warnings,
        )


_NAMES_PROPERTIES = frozenset({Status.SUCCEEDED, Status.VALIDATED})
_TARGET_FIELDS = ("tenantId", "profileType", "deviceConfigurationId", "managedDeviceCertificateStateId", "via")
_CARRIED_WARNINGS = 10  # what a deferred copy may carry (envelope.py bounds it too)


def _each_once(*groups: Sequence[str]) -> list[str]:
    """The warnings of every group, in order, each once (a Retry-After capped on several attempts)."""
    return list(dict.fromkeys(warning for group in groups for warning in group))
