"""`certstate results`: every outcome on the result queue that matches, once each; --follow for new ones."""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import TYPE_CHECKING

from producer.cli import target
from producer.cli.console import err, plural, progress
from producer.cli.exits import EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.options import (
    FORMATTER,
    Commands,
    Common,
    count,
    json_option,
    outcome_filter,
    progress_option,
    seconds,
)
from producer.cli.scan import Filter, Scan, read_json
from producer.cli.tables import Printer, outcome_lines
from producer.cli.tenants import registry_table_option
from producer.sender import storage_errors
from producer.tenants import display_names
from shared.contract.outcomes import Status

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

EPILOG = f"""\
examples:
  certstate results
  certstate results --correlation-id order-4711
  certstate results --status failed --since 2h --json | jq .error
  certstate results --follow                               # new outcomes as they arrive, until Ctrl-C
  certstate results --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47   # TENANT: its registry display name
  certstate results --remove --status succeeded --max 500  # consume (delete) what is printed

{
    exit_codes(
        (0, "done, whether or not an outcome matched (the summary on stderr says how many did)"),
        USAGE,
        STORAGE,
        (INTERRUPTED[0], INTERRUPTED[1] + "; --follow ends this way"),
    )
}"""


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "results",
        parents=[common.storage, common.result_queue, common.outcomes],
        help="show outcomes from the result queue",
        description=(
            "Show the outcomes (docs/outcomes.md) on the result queue that match, as a table or JSON Lines,\n"
            "each once, and say on stderr how many messages were scanned. The whole queue is read: messages\n"
            "are received page by page, kept hidden while the scan goes on, and made visible again at its end\n"
            "(within 30 s if the identity may not update messages). With --remove, what is printed is deleted."
        ),
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    parser.add_argument("--status", choices=[s.value for s in Status], help="only outcomes with this status")
    parser.add_argument("--remove", action="store_true", help="delete the outcomes printed (consume them)")
    parser.add_argument("--max", type=count(1), default=None, metavar="N", help="stop after N outcomes")
    parser.add_argument("--follow", "-f", action="store_true", help="keep reading new outcomes until Ctrl-C")
    parser.add_argument(
        "--interval",
        type=seconds,
        default=2.0,
        metavar="SECONDS",
        help="seconds between reads with --follow (default 2)",
    )
    registry_table_option(parser)
    progress_option(parser)
    json_option(parser, "print each outcome as one JSON line")
    parser.set_defaults(run=run)


class _Reader:
    """Reads the result queue, once or again and again, printing each matching outcome once."""

    def __init__(self, args: argparse.Namespace, queue: QueueClient, names: dict[str, str]) -> None:
        self.args = args
        self.queue = queue
        self.chosen: Filter = outcome_filter(args)
        self.printer = Printer(args.json, lines=lambda outcome: outcome_lines(outcome, names))
        self.seen: set[str] = set()
        self.peek_only = False

    @property
    def done(self) -> bool:
        return self.args.max is not None and self.printer.printed >= self.args.max

    def read(self) -> None:
        """One scan of the whole queue."""
        counter = progress(self.args, "scanned")
        with Scan(self.queue, progress=counter, allow_peek=not self.args.remove) as scan:
            for message in scan:
                if message.id in self.seen:
                    continue
                self.seen.add(message.id)
                outcome = read_json(message.content)
                if outcome is None:
                    err(f"skipped result-queue message {message.id}: not an outcome (not a JSON object)")
                elif self.chosen.matches(outcome):
                    self.printer(outcome)
                    if self.args.remove:
                        scan.delete(message)
                    if self.done:
                        break
            if scan.peek_only and not self.peek_only:
                scan.note_peek_only(f"'{self.queue.queue_name}'")
            self.peek_only = scan.peek_only

    def summary(self) -> str:
        name = self.args.result_queue
        verb = "removed" if self.args.remove else "shown"
        shown = self.printer.printed
        scanned = plural(len(self.seen), "message")
        if shown == 0:
            return f"no matching outcomes on '{name}' ({scanned} scanned)"
        return f"{plural(shown, 'outcome')} {verb} of {scanned} scanned on '{name}'"


def run(args: argparse.Namespace) -> int:
    """Show the matching outcomes of the whole result queue; with --follow, keep reading."""
    account = target.account(args)
    queue = account.queue(args.result_queue)
    names = display_names(account.table(args.registry_table)) if args.tenant else {}
    reader = _Reader(args, queue, names)
    with storage_errors(account.endpoint, args.result_queue), contextlib.closing(queue):
        if args.follow:
            reader.printer.header()
        try:
            while True:
                reader.read()
                if not args.follow or reader.done:
                    break
                time.sleep(args.interval)
        except KeyboardInterrupt:
            err(reader.summary())
            raise
    err(reader.summary())
    return EXIT_OK
