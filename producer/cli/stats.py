"""`certstate stats`: approximate depths of the input, result and poison queues."""

from __future__ import annotations

import argparse
import contextlib

from producer.cli import target
from producer.cli.console import err, out, out_json
from producer.cli.exits import EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.options import FORMATTER, Commands, Common, json_option
from producer.sender import QueueNotFound, storage_errors

EPILOG = f"""\
examples:
  certstate stats
  certstate stats --json | jq .poison.approximateMessageCount

{
    exit_codes(
        (EXIT_OK, "done (a missing queue is shown as missing)"),
        USAGE,
        (STORAGE[0], "the queue service is unreachable or refused the credentials"),
        INTERRUPTED,
    )
}"""


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "stats",
        parents=[common.storage, common.input_queue, common.result_queue],
        help="approximate depth of the input, result and poison queues",
        description="Approximate message counts of the input, result and <input>-poison queues (missing ones say so).",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    json_option(parser, "print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Approximate depths of the input, result and poison queues."""
    account = target.account(args)
    queues = {
        "input": args.input_queue,
        "result": args.result_queue,
        "poison": f"{args.input_queue}-poison",
    }
    depths: dict[str, int | None] = {}
    for role, name in queues.items():
        with contextlib.closing(account.queue(name)) as queue:
            try:
                with storage_errors(account.endpoint, name):
                    depths[role] = int(queue.get_queue_properties().approximate_message_count or 0)
            except QueueNotFound:
                depths[role] = None
    if args.json:
        out_json({role: {"name": queues[role], "approximateMessageCount": depths[role]} for role in queues})
        return EXIT_OK
    width = max(len(name) for name in queues.values()) + len(" (result)")
    out(f"{'QUEUE'.ljust(width)}  MESSAGES (approximate)   {account.endpoint}")
    for role, name in queues.items():
        depth = depths[role]
        out(f"{f'{name} ({role})'.ljust(width)}  {'missing' if depth is None else depth}")
    if depths["poison"]:
        err("the host gave up on the poisoned ones: certstate poison list shows them, poison retry sends them back")
    return EXIT_OK
