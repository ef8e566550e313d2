"""`certstate results`: outcomes from the result queue, peeked, or received and deleted with --remove."""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import TYPE_CHECKING

from producer.cli import target
from producer.cli.console import err
from producer.cli.exits import EXIT_CODES, EXIT_OK
from producer.cli.options import Commands, Common, count, seconds
from producer.cli.scan import PEEK_LIMIT, Filter, process_page, read_outcome, receive_pages, restore, skip_unreadable
from producer.cli.tables import Printer
from producer.cli.target import TARGETS
from producer.sender import storage_errors
from shared.contract.outcomes import Status

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "results",
        parents=[common.storage, common.result_queue],
        help="show outcomes from the result queue",
        description=(
            "Show outcomes (docs/outcomes.md) as a table or JSON Lines. By default they are peeked: left on\n"
            "the queue, and only the first 32 messages of the queue can be seen. With --remove they are\n"
            "received and deleted once printed; messages that do not match the filters are put back at once."
        ),
        epilog=(
            "examples:\n  certstate results\n  certstate results --status failed --json | jq .error\n"
            "  certstate results --follow --remove --correlation-id order-4711\n\n"
            f"{TARGETS}\n\n{EXIT_CODES}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--status", choices=[s.value for s in Status], help="only outcomes with this status")
    parser.add_argument("--correlation-id", metavar="ID", help="only outcomes with this correlationId")
    parser.add_argument("--json", action="store_true", help="print each outcome as one JSON line")
    parser.add_argument("--remove", action="store_true", help="delete the outcomes printed (consume them)")
    parser.add_argument(
        "--max", type=count(1), default=PEEK_LIMIT, metavar="N", help="at most N outcomes per read (default 32)"
    )
    parser.add_argument("--follow", "-f", action="store_true", help="keep polling until Ctrl-C")
    parser.add_argument(
        "--interval", type=seconds, default=2.0, metavar="SECONDS", help="seconds between polls (default 2)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Show outcomes from the result queue: peeked by default, received and deleted with --remove."""
    account = target.account(args)
    queue = account.queue(args.result_queue)
    chosen = Filter(status=args.status, correlation_id=args.correlation_id)
    printer = Printer(args.json)
    if not args.remove and args.max > PEEK_LIMIT:
        err(f"note: without --remove only the first {PEEK_LIMIT} messages of a queue can be seen")
    seen: set[str] = set()
    with storage_errors(account.endpoint, args.result_queue), contextlib.closing(queue):
        if args.follow:
            printer.header()
        while True:
            if args.remove:
                _take_outcomes(queue, chosen, printer, args.max)
            else:
                _peek_outcomes(queue, chosen, printer, args.max, seen)
            if not args.follow:
                break
            time.sleep(args.interval)
    if printer.printed == 0 and not args.follow:
        err(f"no matching outcomes on {args.result_queue!r}")
    return EXIT_OK


def _peek_outcomes(queue: QueueClient, chosen: Filter, printer: Printer, limit: int, seen: set[str]) -> None:
    shown = 0
    for message in queue.peek_messages(max_messages=PEEK_LIMIT):
        if shown >= limit:
            break
        if message.id in seen:
            continue
        seen.add(message.id)
        outcome = read_outcome(message.content)
        if outcome is None:
            skip_unreadable(message)
        elif chosen.matches(outcome):
            printer(outcome)
            shown += 1


def _take_outcomes(queue: QueueClient, chosen: Filter, printer: Printer, limit: int) -> None:
    taken = 0
    held: list[QueueMessage] = []

    def handle(message: QueueMessage) -> bool:
        nonlocal taken
        if taken >= limit:
            return False
        outcome = read_outcome(message.content)
        if outcome is None:
            skip_unreadable(message)
            return False
        if not chosen.matches(outcome):
            return False
        printer(outcome)
        queue.delete_message(message)
        taken += 1
        return True

    try:
        for page in receive_pages(queue, held):
            process_page(page, held, handle)
            if taken >= limit:
                break
    finally:
        restore(queue, held)
