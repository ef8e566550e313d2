"""Reading the result queue: outcomes out of queue messages, filters, and the receive-and-restore scan.

Queue Storage peeks at most 32 messages, always the first ones; seeing the whole queue means receiving
it page by page (each message hidden for a while) and making what is kept visible again afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from producer.cli.console import err, plural
from shared.contract.errors import MessageRejected
from shared.contract.parsing import decode_body

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

PEEK_LIMIT: Final = 32
"""Queue Storage peeks at most 32 messages, always the first ones."""
SCAN_VISIBILITY_S: Final = 60
"""How long messages received while scanning stay hidden if the CLI dies before putting them back."""


def read_outcome(content: object) -> dict[str, Any] | None:
    """An outcome's JSON object from a result-queue message (raw JSON; base64 tolerated), or None."""
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


@dataclass(frozen=True)
class Filter:
    """Which outcomes a command is about; `None` matches anything."""

    status: str | None = None
    correlation_id: str | None = None
    error_code: str | None = None

    def matches(self, outcome: dict[str, Any]) -> bool:
        """Whether `outcome` passes every filter given."""
        return (
            (self.status is None or outcome.get("status") == self.status)
            and (self.correlation_id is None or outcome.get("correlationId") == self.correlation_id)
            and (self.error_code is None or error_code(outcome) == self.error_code)
        )


def skip_unreadable(message: QueueMessage) -> None:
    """Say that a result-queue message is not an outcome (it is left where it is)."""
    err(f"skipped result-queue message {message.id}: not an outcome (not a JSON object)")


def receive_pages(queue: QueueClient, held: list[QueueMessage]) -> Iterator[list[QueueMessage]]:
    """Pages of received messages, each message once per pass; repeats (visibility ran out) go to `held`."""
    seen: set[str] = set()
    while True:
        page = list(
            queue.receive_messages(
                messages_per_page=PEEK_LIMIT, max_messages=PEEK_LIMIT, visibility_timeout=SCAN_VISIBILITY_S
            )
        )
        fresh = [m for m in page if m.id not in seen]
        held.extend(m for m in page if m.id in seen)
        if not fresh:
            return
        seen.update(m.id for m in fresh)
        yield fresh


def restore(queue: QueueClient, held: list[QueueMessage]) -> None:
    """Make received-but-kept messages visible again now, not when their visibility timeout ends.

    Updating a message needs more than the Storage Queue Data Message Processor role; without it the
    messages simply reappear after SCAN_VISIBILITY_S, which is said once rather than failing the command.
    """
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: PLC0415 - lazy

    refused: HttpResponseError | None = None
    count = 0
    while held:
        message = held.pop()
        try:
            queue.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
        except ResourceNotFoundError:
            continue  # deleted, or received again by someone else: nothing to put back
        except HttpResponseError as error:
            if getattr(error, "error_code", None) in {"PopReceiptMismatch", "MessageNotFound"}:
                continue
            refused, count = error, count + 1
    if refused is not None:
        err(
            f"note: could not make {plural(count, 'message')} visible again at once "
            f"({refused.status_code} {getattr(refused, 'error_code', '') or ''}".rstrip()
            + f"); they reappear within {SCAN_VISIBILITY_S} s"
        )


def process_page(page: list[QueueMessage], held: list[QueueMessage], handle: Callable[[QueueMessage], bool]) -> None:
    """Run `handle` on each message (True: consumed); the others, and the rest on an error, go to `held`."""
    for position, message in enumerate(page):
        try:
            consumed = handle(message)
        except BaseException:
            held.extend(page[position:])
            raise
        if not consumed:
            held.append(message)
