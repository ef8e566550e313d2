"""One queue message in, exactly one outcome out (or a retry, until the last delivery; or a deferral).

`CertStatePipeline.handle` is what the function calls, and reads as its steps: read the body, admit
the delivery against its deferral record (`shared.deferral_policy`), validate, resolve and PATCH
(`_apply`), then conclude the outcome: fit it to the result queue, log it, count it, audit it. It
returns the outcome with its JSON text, or raises `TransientError` so the host hands the message
back to the queue. On the message's last delivery a transient failure becomes a `failed` outcome
instead, so no message is poisoned without one, and no delivery ever yields two. A message that
asks for a deferral goes back on the queue as a delayed copy, and this delivery returns None.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

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
from shared.contract.messages import CHECK_KEY, to_datetime
from shared.contract.outcomes import Consent, ConsentState, GraphInfo, Outcome, Result, Status, Target, bare, fit
from shared.contract.parsing import parse_check
from shared.deferral_policy import DeferralPolicy, DeferralStore, Requeue, Superseded
from shared.graph.client import GraphResult
from shared.graph.consent import ConsentResult
from shared.graph.routes import GraphRequest
from shared.graph.tenancy import Tenant
from shared.logs import log_event, message_context
from shared.outcome_builder import Delivery, OutcomeBuilder
from shared.telemetry import Telemetry

__all__ = ["AuditSink", "CertStatePipeline", "ConsentChecker", "Delivery", "GraphPatcher", "TenantLookup"]
"""What the function builds and calls: `Delivery` is `handle`'s argument (defined with the outcome builder)."""

logger = logging.getLogger("certstate")


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
        self._outcome_budget = outcome_budget  # UTF-8 bytes of JSON text (limits.outcome_budget)
        self._clock = clock
        self._timer = timer
        self._deferral = DeferralPolicy(
            requeue=requeue,
            store=deferrals,
            max_deferral_seconds=max_deferral_seconds,
            max_dequeue_count=max_dequeue_count,
            key=key,
            clock=clock,
            telemetry=self._telemetry,
        )

    def handle(self, body: bytes, delivery: Delivery) -> Result | None:
        """Process one delivery; raise `TransientError` to have it redelivered, None when deferred."""
        started = self._timer()
        report = OutcomeBuilder(delivery)
        unreadable = report.read(body)
        with (
            self._telemetry.message_span(report.delivery.message_id, report.delivery.dequeue_count),
            message_context(messageId=report.delivery.message_id, dequeueCount=report.delivery.dequeue_count),
        ):
            outcome = self._outcome(report, unreadable)
            if outcome is None:
                return None
            return self._conclude(outcome, report, body, started)

    def _outcome(self, report: OutcomeBuilder, unreadable: MessageRejected | None) -> Outcome | None:
        """What the delivery ends with, by what went wrong; None when the message goes on in a copy."""
        try:
            try:
                return self._process(report, unreadable)
            except DeferralRequested as asked:  # what goes wrong while deferring is handled as below
                return self._deferral.defer(asked, report)
            except Superseded:
                return self._deferral.superseded(report)
        except PermanentError as err:
            return report.error(err, self._clock())
        except TransientError as err:
            return self._retry_or_report(err, report)
        except Exception as err:  # a bug must not lose the message: retry, then report
            logger.exception("unexpected error")
            if not report.last_delivery(self._max_dequeue_count):
                self._telemetry.handed_back(None, report.correlation_id)
                raise
            internal = CertStateError(code=ErrorCode.INTERNAL_ERROR, message=type(err).__name__)
            return report.error(internal, self._clock())

    def _conclude(self, outcome: Outcome, report: OutcomeBuilder, body: bytes, started: float) -> Result:
        """The one way an outcome leaves the pipeline: timed, fitted, logged, counted, then audited."""
        outcome = outcome.model_copy(update={"duration_ms": round((self._timer() - started) * 1000)})
        try:
            result = fit(outcome, self._outcome_budget)
        except Exception:  # a bug here must not cost the outcome: its bare form always fits
            logger.exception("outcome could not be fitted")
            result = fit(bare(outcome), self._outcome_budget)
        outcome = result.outcome
        log_event(logger, logging.INFO if outcome.status is not Status.FAILED else logging.WARNING, "outcome",
                  messageId=outcome.message_id, dequeueCount=outcome.dequeue_count,
                  correlationId=outcome.correlation_id, tenantId=outcome.target.tenant_id,
                  tenantName=(name := self._tenant_name(outcome.target.tenant_id)), status=outcome.status.value,
                  code=outcome.error.code if outcome.error else None, httpStatus=outcome.http_status,
                  requestId=outcome.graph.request_id if outcome.graph else None,
                  attempts=outcome.attempts, durationMs=outcome.duration_ms,
                  truncated=outcome.truncated or None)  # fmt: skip
        self._telemetry.outcome(outcome, name)
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
        self._deferral.admit(report)
        with message_context(messageId=report.delivery.message_id, dequeueCount=report.delivery.dequeue_count):
            return self._apply(report)

    def _apply(self, report: OutcomeBuilder) -> Outcome:
        assert report.document is not None
        if CHECK_KEY in report.document:
            return self._check(report)
        message = report.parse()
        tenant = self._tenants.tenant(message.tenant_id)  # before anything could ask for a token
        request = report.route(self._base_url)
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
