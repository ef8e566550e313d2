"""One queue message in, exactly one outcome out (or a retry, until the last delivery).

`CertStatePipeline.handle` is what the function calls. It returns the outcome to write, or
raises `TransientError` so the host hands the message back to the queue. On the message's
last delivery a transient failure becomes a `failed` outcome instead, so no message is
poisoned without one, and no delivery ever yields two.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.contract.errors import (
    CertStateError,
    ErrorCode,
    MessageExpired,
    MessageRejected,
    PermanentError,
    TransientError,
)
from shared.contract.messages import CORRELATION_ID, UpdateMessage, to_datetime
from shared.contract.outcomes import ErrorDetail, GraphInfo, Outcome, OutcomeError, Status, Target
from shared.contract.parsing import decode_body, parse_message
from shared.graph.client import GraphResult
from shared.graph.routes import GraphRequest, build_request
from shared.logs import log_event, message_context

logger = logging.getLogger("certstate")


@dataclass(frozen=True)
class Delivery:
    """What the queue says about this delivery of a message."""

    message_id: str
    dequeue_count: int


class GraphPatcher(Protocol):
    """The part of `GraphClient` the pipeline needs (tests may pass a loopback-backed one)."""

    def patch(self, request: GraphRequest) -> GraphResult: ...  # noqa: D102


class CertStatePipeline:
    """Validate, resolve, PATCH, report."""

    def __init__(
        self,
        *,
        graph: GraphPatcher,
        graph_base_url: str,
        max_dequeue_count: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._graph = graph
        self._base_url = graph_base_url
        self._max_dequeue_count = max_dequeue_count
        self._clock = clock
        self._timer = timer

    def handle(self, body: bytes, delivery: Delivery) -> Outcome:
        """Process one delivery; raise `TransientError` to have it redelivered."""
        started = self._timer()
        with message_context(messageId=delivery.message_id, dequeueCount=delivery.dequeue_count):
            report = _Report(delivery)
            try:
                outcome = self._process(body, report, started)
            except PermanentError as err:
                outcome = report.error(err, self._elapsed(started), self._clock())
            except TransientError as err:
                if delivery.dequeue_count < self._max_dequeue_count:
                    log_event(logger, logging.WARNING, "retryLater", correlationId=report.correlation_id,
                              code=err.code.value, httpStatus=err.http_status, requestId=err.trace.request_id,
                              attempts=err.attempts)  # fmt: skip
                    raise
                outcome = report.error(err, self._elapsed(started), self._clock())
            except Exception as err:  # a bug must not lose the message: retry, then report
                logger.exception("unexpected error")
                if delivery.dequeue_count < self._max_dequeue_count:
                    raise
                internal = CertStateError(code=ErrorCode.INTERNAL_ERROR, message=type(err).__name__)
                outcome = report.error(internal, self._elapsed(started), self._clock())
            log_event(logger, logging.INFO if outcome.status is not Status.FAILED else logging.WARNING, "outcome",
                      correlationId=outcome.correlation_id, status=outcome.status.value,
                      code=outcome.error.code if outcome.error else None, httpStatus=outcome.http_status,
                      requestId=outcome.graph.request_id if outcome.graph else None,
                      attempts=outcome.attempts, durationMs=outcome.duration_ms)  # fmt: skip
            return outcome

    def _process(self, body: bytes, report: _Report, started: float) -> Outcome:
        document = decode_body(body)
        report.document = document
        message = parse_message(document)
        report.message = message
        request = build_request(self._base_url, message)
        report.request = request
        now = self._clock()
        if message.expires_at is not None and now > to_datetime(message.expires_at):
            raise MessageExpired(code=ErrorCode.MESSAGE_EXPIRED, message=f"expired at {message.expires_at}")
        if message.dry_run:
            return report.build(Status.VALIDATED, self._elapsed(started), now, graph_request=request.as_dict())
        with message_context(correlationId=report.correlation_id):
            result = self._graph.patch(request)
        return report.build(
            Status.SUCCEEDED,
            self._elapsed(started),
            self._clock(),
            http_status=result.status,
            graph=GraphInfo(
                request_id=result.trace.request_id,
                client_request_id=result.trace.client_request_id,
                date=result.trace.date,
            ),
            attempts=result.attempts,
        )

    def _elapsed(self, started: float) -> int:
        return round((self._timer() - started) * 1000)


class _Report:
    """Builds the outcome from whatever could be read of the message."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.document: dict[str, Any] | None = None
        self.message: UpdateMessage | None = None
        self.request: GraphRequest | None = None

    @property
    def correlation_id(self) -> str:
        """The producer's id when it is valid, even if the rest of the message is not."""
        if self.message is not None:
            return self.message.correlation_id or self.delivery.message_id
        given = (self.document or {}).get("correlationId")
        if isinstance(given, str) and CORRELATION_ID.match(given):
            return given
        return self.delivery.message_id

    def _target(self) -> Target:
        """The named target; for a rejected message, whatever strings it gave (capped), to help find it."""
        if self.message is not None:
            m = self.message
            return Target(
                profile_type=m.profile_type,
                device_configuration_id=m.device_configuration_id,
                managed_device_certificate_state_id=m.managed_device_certificate_state_id,
                via=m.via,
            )
        document = self.document or {}
        return Target.model_validate(
            {key: value[:256] for key in _TARGET_FIELDS if isinstance(value := document.get(key), str)}
        )

    def build(self, status: Status, duration_ms: int, now: datetime, **fields: Any) -> Outcome:  # noqa: ANN401
        message = self.message
        return Outcome(
            status=status,
            correlation_id=self.correlation_id,
            message_id=self.delivery.message_id,
            dequeue_count=self.delivery.dequeue_count,
            target=self._target(),
            updated_properties=list(self.request.body) if self.request and status in _NAMES_PROPERTIES else [],
            warnings=message.update.warnings if message else [],
            duration_ms=duration_ms,
            completed_at=now,
            **fields,
        )

    def error(self, err: CertStateError, duration_ms: int, now: datetime) -> Outcome:
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
            duration_ms,
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
        )


_NAMES_PROPERTIES = frozenset({Status.SUCCEEDED, Status.VALIDATED})
_TARGET_FIELDS = ("profileType", "deviceConfigurationId", "managedDeviceCertificateStateId", "via")
