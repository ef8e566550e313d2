"""One queue message in, exactly one outcome out (or a retry, until the last delivery; or a deferral).

`CertStatePipeline.handle` is what the function calls. It returns the outcome with its JSON
text, already cut to fit the result queue, or raises `TransientError` so the host hands the
message back to the queue. On the message's last delivery a transient failure becomes a
`failed` outcome instead, so no message is poisoned without one, and no delivery ever yields two.
A `Deferred` message (an open breaker, a tenant without a write slot soon) goes back on the queue
as a delayed copy that keeps its identity (`shared.contract.envelope`), and this delivery writes
nothing: `handle` returns None.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.contract.envelope import DeferralRecord, unwrap, wrap
from shared.contract.errors import (
    CertStateError,
    Deferred,
    ErrorCode,
    MessageExpired,
    MessageRejected,
    PermanentError,
    TransientError,
)
from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.contract.messages import CORRELATION_ID, UpdateMessage, to_datetime
from shared.contract.outcomes import ErrorDetail, GraphInfo, Outcome, OutcomeError, Status, Target, bare, fit
from shared.contract.parsing import decode_body, parse_message
from shared.graph.client import GraphResult
from shared.graph.routes import GraphRequest, build_request
from shared.logs import log_event, message_context
from shared.telemetry import Telemetry
from shared.tenancy import Tenant

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

    def patch(self, request: GraphRequest, tenant: Tenant) -> GraphResult: ...  # noqa: D102


class TenantLookup(Protocol):
    """The part of `TenantDirectory` the pipeline needs: a served tenant, or `tenantNotAllowed`."""

    def tenant(self, tenant_id: str | None) -> Tenant: ...  # noqa: D102


class AuditSink(Protocol):
    """Where outcomes are kept beyond the result queue (`shared.audit.AuditTrail`)."""

    def record(self, result: Result, body: bytes, enqueued_at: datetime | None) -> None: ...  # noqa: D102


Requeue = Callable[[str, int], None]
"""Put queue text back on the input queue, invisible for the given whole seconds."""


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
        max_deferral_seconds: float = 3600.0,
        outcome_budget: int = QUEUE_MESSAGE_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timer: Callable[[], float] = time.monotonic,
        telemetry: Telemetry | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self._graph = graph
        self._telemetry = telemetry or Telemetry()
        self._audit = audit
        self._tenants = tenants
        self._base_url = graph_base_url
        self._max_dequeue_count = max_dequeue_count
        self._requeue = requeue
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
                outcome = self._process(report, unreadable)
            except Deferred as deferral:
                outcome = self._defer(deferral, report)
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
                      correlationId=outcome.correlation_id, tenantId=outcome.target.tenant_id,
                      status=outcome.status.value,
                      code=outcome.error.code if outcome.error else None, httpStatus=outcome.http_status,
                      requestId=outcome.graph.request_id if outcome.graph else None,
                      attempts=outcome.attempts, durationMs=outcome.duration_ms,
                      truncated=outcome.truncated or None)  # fmt: skip
            self._telemetry.outcome(outcome)
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
        assert report.document is not None
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
        with message_context(correlationId=report.correlation_id, **tenant_field):
            result = self._graph.patch(request, tenant)
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

    def _retry_or_report(self, err: TransientError, report: OutcomeBuilder) -> Outcome:
        """Hand the message back to the host, or report it on its last delivery."""
        if not report.last_delivery(self._max_dequeue_count):
            log_event(logger, logging.WARNING, "retryLater", correlationId=report.correlation_id,
                      code=err.code.value, httpStatus=err.http_status, requestId=err.trace.request_id,
                      attempts=err.attempts)  # fmt: skip
            self._telemetry.handed_back(err, report.correlation_id)
            raise err
        return report.error(err, self._clock())

    def _defer(self, deferral: Deferred, report: OutcomeBuilder) -> Outcome | None:
        """Put the message back with a delay, unless it has waited long enough (then report it)."""
        now = self._clock()
        since = report.deferral.deferred_since if report.deferral else now
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
        deferrals = report.deferral.deferrals + 1 if report.deferral else 1
        carried = _each_once(report.deferral.warnings if report.deferral else (), deferral.warnings)
        record = DeferralRecord(
            report.delivery.message_id,
            report.delivery.dequeue_count - 1,
            deferrals,
            since,
            tuple(carried[:_CARRIED_WARNINGS]),
        )
        assert report.document is not None
        text = wrap(report.document, record)
        delay = min(MAX_VISIBILITY_DELAY_SECONDS, max(1, math.ceil(deferral.delay_seconds)))
        fallback = TransientError(code=deferral.cause, message=f"{deferral.reason}; the message could not be deferred")
        if self._requeue is None or len(text.encode("utf-8")) > QUEUE_MESSAGE_BYTES:
            return self._retry_or_report(fallback, report)
        try:
            self._requeue(text, delay)
        except Exception as err:  # any storage failure: the host's own retry still holds
            log_event(logger, logging.WARNING, "deferralFailed", reason=type(err).__name__)
            return self._retry_or_report(fallback, report)
        log_event(logger, logging.INFO, "deferred", correlationId=report.correlation_id,
                  tenantId=message.tenant_id if message else None, reason=deferral.reason,
                  delaySeconds=delay, deferrals=deferrals, code=deferral.cause.value)  # fmt: skip
        self._telemetry.deferred(deferral.cause.value)
        return None

    def _elapsed(self, started: float) -> int:
        return round((self._timer() - started) * 1000)


class OutcomeBuilder:
    """Builds the outcome from whatever could be read of the message."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.deferral: DeferralRecord | None = None
        self.document: dict[str, Any] | None = None
        self.message: UpdateMessage | None = None
        self.request: GraphRequest | None = None

    def read(self, body: bytes) -> MessageRejected | None:
        """Decode the body; a deferred copy takes back its original identity and delivery count."""
        try:
            self.document, self.deferral = unwrap(decode_body(body))
        except MessageRejected as err:
            return err
        if self.deferral is not None:
            self.delivery = Delivery(
                self.deferral.message_id,
                self.deferral.failed_deliveries + self.delivery.dequeue_count,
                self.deferral.deferred_since,  # this copy's own enqueue time is not the message's
            )
        return None

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
                self.deferral.warnings if self.deferral else (),
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
