"""`certstate poison`: the messages the host gave up on (`<input>-poison`): list, show, send back for another try.

The host moves a message there, unchanged, when its deliveries ran out without the function completing
it (the function writes an outcome first whenever it can, so this is rare: a crash loop, a host that
could not decode it). `retry` puts the stored text back on the input queue as it is and deletes it from
the poison queue, so the function sees the message again and writes its outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from producer.cli import target
from producer.cli.console import err, out, out_json, plural, progress
from producer.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_USAGE, INTERRUPTED, STORAGE, USAGE, UsageError, exit_codes
from producer.cli.options import FORMATTER, Commands, Common, count, json_option, progress_option
from producer.cli.scan import Scan, read_json
from producer.cli.tables import Printer, row
from producer.sender import QueueNotFound, StorageAccount, storage_errors

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

COLUMNS: Final = (
    ("MESSAGE ID", 36),
    ("INSERTED", 20),
    ("BYTES", 6),
    ("CORRELATION ID", 28),
    ("PROFILE TYPE", 40),
)
POISON_SUFFIX: Final = "-poison"


def register(commands: Commands, common: Common) -> None:
    """Add the command and its three subcommands to the parser."""
    parser = commands.add_parser(
        "poison",
        help="list, show or send back the messages on the poison queue",
        description=(
            "The poison queue (<input queue>-poison) holds the messages the host gave up on, unchanged.\n"
            "List them, show one, or send them back to the input queue for another try."
        ),
        epilog=(
            "examples:\n  certstate poison list\n  certstate poison show 3f2a…\n"
            "  certstate poison retry --all --dry-run\n\nEach subcommand has its own --help."
        ),
        formatter_class=FORMATTER,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    parents = [common.storage, common.input_queue]
    listing = actions.add_parser(
        "list",
        parents=parents,
        help="every message on the poison queue, one line each",
        description="List every message on the poison queue: id, when it was put there, size, and what it names.",
        epilog=exit_codes((EXIT_OK, "done (a missing poison queue is an empty one)"), USAGE, STORAGE, INTERRUPTED),
        formatter_class=FORMATTER,
    )
    listing.add_argument("--max", type=count(1), default=None, metavar="N", help="stop after N messages")
    progress_option(listing)
    json_option(listing, "print one JSON object per message (with its content)")
    listing.set_defaults(run=run_list)
    show = actions.add_parser(
        "show",
        parents=parents,
        help="one poison message in full",
        description="Show one message of the poison queue: its metadata and its content (JSON pretty-printed).",
        epilog=exit_codes(
            (EXIT_OK, "shown"), (EXIT_INVALID, "no message with that id is on the poison queue"), USAGE, STORAGE
        ),
        formatter_class=FORMATTER,
    )
    show.add_argument("id", metavar="MESSAGE_ID", help="the id `poison list` shows")
    json_option(show, "print the message as one JSON object")
    show.set_defaults(run=run_show)
    retry = actions.add_parser(
        "retry",
        parents=parents,
        help="send poison messages back to the input queue for another try",
        description=(
            "Put poison messages back on the input queue, exactly as stored, then delete them from the poison\n"
            "queue; the function then writes their outcome. Name the messages, or give --all."
        ),
        epilog=exit_codes(
            (EXIT_OK, "every message named was sent back (or would be, with --dry-run)"),
            (EXIT_INVALID, "a message named is not on the poison queue (the others were sent back)"),
            (EXIT_USAGE, "no message named and no --all, or both; or another usage error"),
            STORAGE,
            INTERRUPTED,
        ),
        formatter_class=FORMATTER,
    )
    retry.add_argument("ids", nargs="*", metavar="MESSAGE_ID", help="ids `poison list` shows")
    retry.add_argument("--all", action="store_true", help="every message on the poison queue")
    retry.add_argument("--dry-run", action="store_true", help="say what would be sent back; change nothing")
    progress_option(retry)
    json_option(retry, "print one JSON object per message: action, id, newMessageId")
    retry.set_defaults(run=run_retry)


def _poison_name(args: argparse.Namespace) -> str:
    return f"{args.input_queue}{POISON_SUFFIX}"


def describe(message: QueueMessage) -> dict[str, Any]:
    """A poison message as JSON: metadata, the stored text, and what it names if it is a message at all."""
    text = message.content if isinstance(message.content, str) else str(message.content)
    document = read_json(text)
    return {
        "id": message.id,
        "insertedOn": message.inserted_on.isoformat() if message.inserted_on else None,
        "bytes": len(text.encode("utf-8")),
        "correlationId": (document or {}).get("correlationId"),
        "profileType": (document or {}).get("profileType"),
        "json": document is not None,
        "content": text,
    }


def _line(item: dict[str, Any]) -> list[str]:
    inserted = (item["insertedOn"] or "")[:19]
    what = item["profileType"] if item["json"] else "(not a JSON message)"
    return [row(COLUMNS, [item["id"], inserted, item["bytes"], item["correlationId"], what])]


@contextlib.contextmanager
def _poison_scan(args: argparse.Namespace, account: StorageAccount, **options: Any) -> Iterator[Scan | None]:  # noqa: ANN401
    """A scan of the poison queue; None when the queue does not exist (nothing was ever poisoned)."""
    name = _poison_name(args)
    queue: QueueClient = account.queue(name)
    with contextlib.closing(queue):
        try:
            with storage_errors(account.endpoint, name):
                properties = queue.get_queue_properties()
        except QueueNotFound:
            yield None
            return
        with storage_errors(account.endpoint, name), Scan(queue, **options) as scan:
            scan.reported = properties.approximate_message_count
            yield scan


def run_list(args: argparse.Namespace) -> int:
    """List the poison queue."""
    account = target.account(args)
    printer = Printer(args.json, COLUMNS, _line)
    name = _poison_name(args)
    with _poison_scan(args, account, progress=progress(args, "scanned")) as scan:
        if scan is None:
            err(f"no poison queue '{name}': nothing was ever poisoned there")
            return EXIT_OK
        for message in scan:
            printer(describe(message))
            if args.max is not None and printer.printed >= args.max:
                break
        scan.note_peek_only(f"'{name}'")
        everything = args.max != printer.printed and not scan.peek_only
    err(
        f"{plural(printer.printed, 'message')} on '{name}'"
        + (" (more not listed)" if args.max == printer.printed else "")
    )
    if everything and (scan.reported or 0) > printer.printed:
        err(
            f"note: '{name}' reports about {plural(scan.reported or 0, 'message')}; the others are hidden for now "
            "(received by someone else, or by a read that failed after reaching the service): list again later"
        )
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """Show one poison message."""
    account = target.account(args)
    name = _poison_name(args)
    with _poison_scan(args, account) as scan:
        found = next((m for m in scan if m.id == args.id), None) if scan is not None else None
        if found is None:
            err(f"no message {args.id} on '{name}'")
            return EXIT_INVALID
        item = describe(found)
    if args.json:
        out_json(item)
        return EXIT_OK
    out(f"message id   {item['id']}")
    out(f"inserted     {item['insertedOn'] or '-'}")
    out(f"bytes        {item['bytes']}")
    out(f"queue        {name}")
    document = read_json(item["content"])
    out("content" + ("" if document is not None else " (not a JSON message; as stored)"))
    text = json.dumps(document, indent=2, ensure_ascii=False) if document is not None else item["content"]
    for line in text.split("\n"):  # its own line breaks shown as lines; anything else a terminal acts on, escaped
        out(line)
    return EXIT_OK


def run_retry(args: argparse.Namespace) -> int:
    """Send poison messages back to the input queue, unchanged."""
    if bool(args.ids) == bool(args.all):
        msg = "name the messages to send back (ids from `certstate poison list`), or give --all, not both"
        raise UsageError(msg)
    account = target.account(args)
    name = _poison_name(args)
    wanted = set(args.ids)
    sent = 0
    with _poison_scan(args, account, progress=progress(args, "scanned"), allow_peek=False) as scan:
        if scan is None:
            err(f"no poison queue '{name}': nothing to send back")
            return EXIT_INVALID if wanted else EXIT_OK
        inputs = account.queue(args.input_queue)
        with storage_errors(account.endpoint, args.input_queue), contextlib.closing(inputs):
            for message in scan:
                if not args.all and message.id not in wanted:
                    continue
                wanted.discard(message.id)
                sent += 1
                _send_back(args, scan, inputs, message)
                if not args.all and not wanted:
                    break
    for missing in sorted(wanted):
        err(f"no message {missing} on '{name}'")
    verb = "would send back" if args.dry_run else "sent back"
    (err if args.json else out)(f"{verb} {plural(sent, 'message')} from '{name}' to '{args.input_queue}'")
    return EXIT_INVALID if wanted else EXIT_OK


def _send_back(args: argparse.Namespace, scan: Scan, inputs: QueueClient, message: QueueMessage) -> None:
    """Send the stored text back first, then delete the poison copy: a failure between duplicates, never loses."""
    text = message.content if isinstance(message.content, str) else str(message.content)
    new_id = None
    if not args.dry_run:
        new_id = str(inputs.send_message(text).id)
        scan.delete(message)
    if args.json:
        out_json({"action": "wouldSendBack" if args.dry_run else "sentBack", "id": message.id, "newMessageId": new_id})
    elif args.dry_run:
        out(f"would send back poison message {message.id} ({len(text.encode('utf-8'))} bytes)")
    else:
        out(f"sent back poison message {message.id} to '{args.input_queue}' as message {new_id}")
