"""When a message waits outside the process, and which delivery of it may go on (docs/design.md).

A message that asks for a deferral (`DeferralRequested`: an open breaker, a tenant without a write
slot soon) goes back on the input queue as a delayed copy that keeps its identity
(`shared.contract.envelope`), and the delivery that deferred it writes nothing. The deferral is first
written to the message's deferral record (`DeferralStore`), then the copy is sent once; a copy is
accepted only when it matches the record, and claims it, so of a copy and a redelivery of its carrier
exactly one goes on. A message that would expire, or wait longer than DEFERRAL_MAX_SECONDS, before it
came back is reported instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from shared.contract.audit import day_key
from shared.contract.envelope import DeferralRecord, Envelope, RecordChanged, wrap
from shared.contract.errors import DeferralRequested, ErrorCode, MessageExpired, TransientError
from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.contract.messages import to_datetime
from shared.contract.outcomes import Outcome
from shared.logs import log_event
from shared.outcome_builder import OutcomeBuilder, each_once
from shared.telemetry import Telemetry

logger = logging.getLogger("certstate")

MAX_VISIBILITY_DELAY_SECONDS = 7 * 24 * 3600
"""Queue Storage's limit on a message's initial invisibility."""
_CARRIED_WARNINGS = 10  # what a deferred copy may carry (envelope.py bounds it too)

Requeue = Callable[[str, int], None]
"""Put queue text back on the input queue, invisible for the given whole seconds (once: no SDK retry)."""


class DeferralStore(Protocol):
    """Where deferral records are kept (`shared.deferrals.DeferralTable`); every write is conditional."""

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


class Superseded(Exception):
    """The delivery's message goes on in the copy it sent; it ends with no outcome of its own."""


class DeferralPolicy:
    """Admits a delivery against its message's deferral record, and defers a message that asks to wait.

    Without a store or a requeue (a deployment that keeps no deferral records) a copy is refused and a
    deferral becomes the host's retry.
    """

    def __init__(
        self,
        *,
        requeue: Requeue | None,
        store: DeferralStore | None,
        max_deferral_seconds: float,
        max_dequeue_count: int,
        key: Callable[[], str],
        clock: Callable[[], datetime],
        telemetry: Telemetry,
    ) -> None:
        self._requeue = requeue
        self._store = store
        self._max_deferral = timedelta(seconds=max_deferral_seconds)
        self._max_dequeue_count = max_dequeue_count
        self._key = key  # a new message's secret, from which its copies' tokens are derived
        self._clock = clock
        self._telemetry = telemetry

    def admit(self, report: OutcomeBuilder) -> None:
        """Let the delivery go on only if the deferral record allows it (see `verdict`).

        A first delivery of an original costs no table call (it cannot have a record yet); a copy
        or a redelivered original reads its record and claims it when it may. Raises the copy's
        rejection, `Superseded`, or `TransientError` when the record cannot be read or claimed.
        """
        envelope, own = report.envelope, report.own
        if envelope is None and (own.dequeue_count <= 1 or self._store is None):
            return
        if self._store is None:
            raise report.refuse(ErrorCode.UNKNOWN_DEFERRAL, "this deployment keeps no deferral records")
        message_id = envelope.message_id if envelope else own.message_id
        day = envelope.day if envelope else day_key(own.enqueued_at or self._clock())
        for _ in range(2):  # a claim lost to a concurrent delivery: decide again on what it wrote
            try:
                record = self._store.find(message_id, day)
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
                raise Superseded
            assert record is not None
            if decided is Verdict.CLAIM:
                base = record.writer_failed_deliveries if record.written_by == own.message_id else None
                try:
                    record = self._claim(self._store, record, own.message_id, base)
                except RecordChanged:
                    continue
                except Exception as err:
                    self._unavailable(report, "claimed", err)
                    return
            report.hold(record)
            return
        self._unavailable(report, "claimed", RecordChanged("changed twice"))

    def defer(self, asked: DeferralRequested, report: OutcomeBuilder) -> Outcome | None:
        """Record the deferral, then put the message back with a delay (or report it, if it waited enough).

        The record comes first: a copy is only ever accepted against it. The copy is sent once; if
        its fate is unknown, this delivery takes the record back, so a copy that did land is a duplicate.
        Raises `TransientError` (the host's retry) when the message cannot be deferred.
        """
        now = self._clock()
        held = report.held
        since = held.since if held else now  # the function's own record, never the message's word
        if (waited_enough := self._waited_enough(asked, report, now, since)) is not None:
            return waited_enough
        fallback = TransientError(code=asked.cause, message=f"{asked.reason}; the message could not be deferred")
        if self._requeue is None or self._store is None:
            raise fallback
        record = DeferralRecord(
            message_id=report.delivery.message_id,
            enqueued_at=held.enqueued_at if held else report.delivery.enqueued_at or now,
            since=since,
            deferral=held.deferral + 1 if held else 1,
            key=held.key if held else self._key(),
            failed_deliveries=report.delivery.dequeue_count - 1,
            written_by=report.own.message_id,
            writer_failed_deliveries=held.failed_deliveries if held else 0,
            slot=asked.slot,
        )
        carried = each_once(report.carried_warnings, asked.warnings)
        envelope = Envelope(record.message_id, record.deferral, record.token, record.day,
                            tuple(carried[:_CARRIED_WARNINGS]))  # fmt: skip
        assert report.document is not None
        text = wrap(report.document, envelope)
        delay = min(MAX_VISIBILITY_DELAY_SECONDS, max(1, math.ceil(asked.delay_seconds)))
        if len(text.encode("utf-8")) > QUEUE_MESSAGE_BYTES:
            raise fallback
        try:
            written = self._store.save(record, held)
        except Exception as err:  # contested or unreachable: nothing was sent, the host's retry holds
            log_event(logger, logging.WARNING, "deferralFailed", step="record", reason=type(err).__name__)
            raise fallback from None
        try:
            self._requeue(text, delay)
        except Exception as err:  # refused, or unknown (a timeout): the copy may exist
            log_event(logger, logging.WARNING, "deferralFailed", step="copy", reason=type(err).__name__)
            return self._take_back(self._store, written, report, fallback)
        message = report.message
        log_event(logger, logging.INFO, "deferred", correlationId=report.correlation_id,
                  messageId=report.delivery.message_id, tenantId=message.tenant_id if message else None,
                  reason=asked.reason, delaySeconds=delay, deferrals=record.deferral,
                  code=asked.cause.value)  # fmt: skip
        self._telemetry.deferred(asked.cause.value)
        return None

    def superseded(self, report: OutcomeBuilder) -> Outcome | None:
        """The message goes on in a copy this delivery sent: a copy ends as a duplicate, an original quietly."""
        log_event(logger, logging.WARNING, "deferralSuperseded", claimedMessageId=report.delivery.message_id)
        if report.envelope is None:
            return None  # its own id is the message's: an outcome here would be a second one
        refused = report.refuse(ErrorCode.DUPLICATE_DEFERRAL, "the copy this delivery sent holds the deferral")
        return report.error(refused, self._clock())

    @staticmethod
    def _claim(
        store: DeferralStore, record: DeferralRecord, queue_id: str, failed_before: int | None
    ) -> DeferralRecord:
        """Take the record for this delivery; the writer taking its own back resumes its own count."""
        failed = record.failed_deliveries if failed_before is None else failed_before
        return store.save(replace(record, claimed_by=queue_id, failed_deliveries=failed), record)

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

    def _waited_enough(
        self, asked: DeferralRequested, report: OutcomeBuilder, now: datetime, since: datetime
    ) -> Outcome | None:
        """The outcome of a message that would expire, or exceed DEFERRAL_MAX_SECONDS, before it came back."""
        comes_back = now + timedelta(seconds=asked.delay_seconds)
        message = report.message
        if message is not None and message.expires_at is not None and comes_back > to_datetime(message.expires_at):
            expired = MessageExpired(
                code=ErrorCode.MESSAGE_EXPIRED,
                message=f"expires at {message.expires_at}, before it could be sent ({asked.reason})",
            )
            return report.error(expired, now)
        if comes_back - since > self._max_deferral:
            waited = (now - since).total_seconds()
            gave_up = TransientError(
                code=asked.cause,
                message=f"{asked.reason}: waited {waited:.0f} s; DEFERRAL_MAX_SECONDS is "
                f"{self._max_deferral.total_seconds():.0f}",
            )
            return report.error(gave_up, now)
        return None

    def _take_back(
        self, store: DeferralStore, written: DeferralRecord, report: OutcomeBuilder, fallback: TransientError
    ) -> Outcome | None:
        """After a copy of unknown fate: hold the record again (a copy that landed is then a duplicate)."""
        try:
            report.hold(self._claim(store, written, report.own.message_id, written.writer_failed_deliveries))
        except RecordChanged:  # the copy landed and claimed it first: the message goes on there
            return self.superseded(report)
        except Exception as err:  # the redelivery takes it back (it wrote the record), or the copy goes on
            log_event(logger, logging.WARNING, "deferralRecordFailed", step="take back", reason=type(err).__name__)
        raise fallback
