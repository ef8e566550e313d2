"""Reading a whole queue: outcomes out of queue messages, the filters, and the receive-and-restore scan.

Queue Storage peeks at most 32 messages, always the first ones, so a peek cannot find an outcome behind
them. A `Scan` receives the queue page by page instead, each message once, keeps every received message
hidden while it goes on (so the next page brings new ones), and makes them visible again when it ends.
An identity that may only peek (Storage Queue Data Reader) gets the first 32, and is told so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from producer.cli.console import Progress, err, plural
from producer.sender import service_code
from shared.contract.errors import MessageRejected
from shared.contract.parsing import decode_body

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

PAGE: Final = 32
"""Queue Storage returns at most 32 messages per receive or peek."""
SCAN_VISIBILITY_S: Final = 30
"""How long scanned messages stay hidden if the scan cannot put them back (no right to, or the CLI died)."""
_SENT_ONCE: Final = {"retry_read": 0, "retry_status": 0}
"""A receive hides what it returns, so one that failed after reaching the service may have hidden a page:
retried, it would find the queue empty and the scan would report a count it never read. Only a request
that never left (a refused connection) is retried; any other failure ends the scan as an error."""
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def read_json(content: object) -> dict[str, Any] | None:
    """A queue message's JSON object (raw JSON or base64 of it, as the function reads them), or None."""
    if not isinstance(content, str | bytes):
        return None
    try:
        return decode_body(content.encode("utf-8") if isinstance(content, str) else content)
    except MessageRejected:
        return None


def error_code(outcome: dict[str, Any]) -> str | None:
    """The outcome's stable error code (docs/outcomes.md), if it has one."""
    error = outcome.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def tenant_id(outcome: dict[str, Any]) -> str | None:
    """The tenant the outcome's target is in (`target.tenantId`; none for the home tenant)."""
    target = outcome.get("target")
    tenant = target.get("tenantId") if isinstance(target, dict) else None
    return tenant if isinstance(tenant, str) else None


def completed_at(outcome: dict[str, Any]) -> datetime | None:
    """When the outcome was written, or None if it does not say in a readable way."""
    value = outcome.get("completedAt")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """`2026-11-27T14:00:00Z`, `2026-11-27` (UTC midnight) or a time ago: `90s`, `15m`, `2h`, `1d`."""
    if match := _AGO.match(value.strip()):
        ago = timedelta(seconds=float(match[1]) * _UNITS[match[2]])
        return (now or datetime.now(UTC)) - ago
    when = datetime.fromisoformat(value.strip())
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filter:
    """Which outcomes a command is about; `None` matches anything."""

    status: str | None = None
    correlation_id: str | None = None
    error_code: str | None = None
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, outcome: dict[str, Any]) -> bool:
        """Whether `outcome` passes every filter given."""
        when = completed_at(outcome)
        tenant = tenant_id(outcome)
        return (
            (self.status is None or outcome.get("status") == self.status)
            and (self.correlation_id is None or outcome.get("correlationId") == self.correlation_id)
            and (self.error_code is None or error_code(outcome) == self.error_code)
            and (self.tenant is None or (tenant is not None and tenant.lower() == self.tenant.lower()))
            and (self.since is None or (when is not None and when >= self.since))
            and (self.until is None or (when is not None and when < self.until))
        )


class Scan:
    """One pass over every message of a queue; `with Scan(queue) as scan: for message in scan: ...`.

    Each message is yielded once. Everything received stays hidden until the scan ends, then is made
    visible again at once, except what was `delete`d. `scanned` counts the messages seen; `peek_only`
    says the identity could only peek, so only the first 32 were.
    """

    def __init__(self, queue: QueueClient, *, progress: Progress | None = None, allow_peek: bool = True) -> None:
        self.queue = queue
        self.scanned = 0
        self.peek_only = False
        self.reported: int | None = None  # the queue's approximate count before the scan, where it was asked
        self._progress = progress
        self._allow_peek = allow_peek
        self._held: dict[str, QueueMessage] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.finish()
        self.restore()

    def __iter__(self) -> Iterator[QueueMessage]:
        from azure.core.exceptions import HttpResponseError  # noqa: PLC0415 - lazy, as in producer.sender

        seen: set[str] = set()
        while True:
            try:
                page = list(
                    self.queue.receive_messages(
                        messages_per_page=PAGE,
                        max_messages=PAGE,
                        visibility_timeout=SCAN_VISIBILITY_S,
                        **_SENT_ONCE,
                    )
                )
            except HttpResponseError as error:
                if error.status_code != 403 or not self._allow_peek or self.scanned:
                    raise
                yield from self._peek()
                return
            for message in page:
                self._held[message.id] = message  # the newest pop receipt, if it came round again
            fresh = [m for m in page if m.id not in seen]
            if not fresh:  # empty, or only messages whose hiding ran out: everything was seen
                return
            for message in fresh:
                seen.add(message.id)
                self.scanned += 1
                if self._progress is not None:
                    self._progress(self.scanned)
                yield message

    def _peek(self) -> Iterator[QueueMessage]:
        self.peek_only = True
        for message in self.queue.peek_messages(max_messages=PAGE):
            self.scanned += 1
            yield message

    def delete(self, message: QueueMessage) -> None:
        """Delete a scanned message for good (it is not put back)."""
        held = self._held.pop(message.id, message)
        self.queue.delete_message(held.id, held.pop_receipt)

    def restore(self) -> None:
        """Make every held message visible again now, not when its hiding ends.

        Putting a message back is an update, which Storage Queue Data Message Processor does not allow;
        without it the messages reappear after SCAN_VISIBILITY_S, which is said once, not an error.
        """
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: PLC0415 - lazy

        refused: HttpResponseError | None = None
        count = 0
        while self._held:
            _, message = self._held.popitem()
            try:
                self.queue.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
            except ResourceNotFoundError:
                continue  # deleted, or received again by someone else: nothing to put back
            except HttpResponseError as error:
                if getattr(error, "error_code", None) in {"PopReceiptMismatch", "MessageNotFound"}:
                    continue
                refused, count = error, count + 1
        if refused is not None:
            err(
                f"note: could not make {plural(count, 'message')} visible again at once "
                f"({f'{refused.status_code} {service_code(refused)}'.strip()}); "
                f"they reappear within {SCAN_VISIBILITY_S} s"
            )

    def note_peek_only(self, what: str) -> None:
        """Say, once, that only the first messages could be seen."""
        if self.peek_only:
            err(
                f"note: this identity may only peek {what}, which shows the first {PAGE} messages; "
                "reading them all needs Storage Queue Data Message Processor (or Contributor)"
            )
