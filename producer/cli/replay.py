"""`certstate replay`: put the original message of `failed` outcomes back on the input queue."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any

from producer.cli import target
from producer.cli.console import out, plural
from producer.cli.exits import EXIT_CODES, EXIT_INVALID, EXIT_OK
from producer.cli.options import Commands, Common
from producer.cli.scan import Filter, error_code, process_page, read_outcome, receive_pages, restore
from producer.cli.target import TARGETS
from producer.sender import CertStateProducer, encode, storage_errors
from shared.contract.errors import MessageRejected
from shared.contract.outcomes import Status

if TYPE_CHECKING:
    from azure.storage.queue import QueueMessage


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "replay",
        parents=[common.storage, common.input_queue, common.result_queue],
        help="re-enqueue the original message of failed outcomes",
        description=(
            "Find `failed` outcomes on the result queue and put the message each one carries (`request`)\n"
            "back on the input queue, unchanged. The whole result queue is scanned; what is not replayed\n"
            "and removed is made visible again at once. Duplicate outcomes of one message are replayed once."
        ),
        epilog=(
            "examples:\n  certstate replay --dry-run\n  certstate replay --error-code graphForbidden --remove\n"
            "  certstate replay --correlation-id order-4711\n\n"
            "Without --remove the outcomes stay, so running replay again sends them again.\n"
            "Exit 1 when an outcome could not be replayed (no request, or the request is invalid).\n\n"
            f"{TARGETS}\n\n{EXIT_CODES}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--correlation-id", metavar="ID", help="only outcomes with this correlationId")
    parser.add_argument("--error-code", metavar="CODE", help="only outcomes with this error code (graphThrottled, …)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be replayed; send and remove nothing")
    parser.add_argument("--remove", action="store_true", help="delete each outcome once its message is re-enqueued")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Put the original message of each matching `failed` outcome back on the input queue."""
    account = target.account(args)
    results = account.queue(args.result_queue)
    chosen = Filter(status=Status.FAILED.value, correlation_id=args.correlation_id, error_code=args.error_code)
    producer = CertStateProducer(account=account, queue_name=args.input_queue)
    held: list[QueueMessage] = []
    groups: dict[str, list[tuple[QueueMessage, dict[str, Any]]]] = {}
    replayed = skipped = removed = 0

    def collect(message: QueueMessage) -> bool:
        outcome = read_outcome(message.content)
        if outcome is None or not chosen.matches(outcome):
            return False
        # At-least-once delivery may have written the same outcome twice: replay it once.
        groups.setdefault(str(outcome.get("messageId") or message.id), []).append((message, outcome))
        return True

    with storage_errors(account.endpoint, args.result_queue), contextlib.closing(results):
        pending: list[list[tuple[QueueMessage, dict[str, Any]]]] | None = None  # None: still collecting
        try:
            for page in receive_pages(results, held):
                process_page(page, held, collect)
            pending = list(groups.values())
            while pending:
                group = pending[0]
                done = _replay_one(group[0][1], producer, dry_run=args.dry_run)
                pending.pop(0)
                if done and args.remove and not args.dry_run:
                    for message, _ in group:
                        results.delete_message(message)
                        removed += 1
                else:
                    held.extend(message for message, _ in group)
                replayed += done
                skipped += not done
        finally:  # whatever was received and is neither deleted nor already held goes back now
            leftovers = groups.values() if pending is None else pending
            held.extend(message for group in leftovers for message, _ in group)
            restore(results, held)
            producer.close()
    if not groups:
        out("no failed outcomes match")
        return EXIT_OK
    if args.dry_run:
        out(f"dry run: {replayed} would be replayed, {skipped} skipped; nothing sent or removed")
    else:
        tail = f"; removed {plural(removed, 'outcome message')}" if args.remove else ""
        out(f"replayed {replayed} onto {producer.queue_name!r}, {skipped} skipped{tail}")
    return EXIT_INVALID if skipped else EXIT_OK


def _replay_one(outcome: dict[str, Any], producer: CertStateProducer, *, dry_run: bool) -> bool:
    what = f"{outcome.get('correlationId')} (failed {error_code(outcome) or '-'}, message {outcome.get('messageId')})"
    request = outcome.get("request")
    if not isinstance(request, dict):
        out(f"skipped {what}: the outcome carries no request")
        return False
    try:
        encode(request, producer.message_encoding)
    except MessageRejected as err:
        out(f"skipped {what}: its request is invalid now: {err.message}")
        return False
    if dry_run:
        out(f"would replay {what}")
        return True
    message_id = producer.send(request)
    out(f"replayed {what} as message {message_id}")
    return True
