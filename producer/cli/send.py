"""`certstate send`: validate a whole file, then enqueue every message (or none)."""

from __future__ import annotations

import argparse

from producer.cli import target
from producer.cli.console import err, out, out_json, plural, progress
from producer.cli.exits import EXIT_INVALID, EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.files import load
from producer.cli.options import FORMATTER, Commands, Common, count, json_option, progress_option, tenant_id
from producer.sender import CertStateProducer, StorageError

EPILOG = f"""\
examples:
  certstate send examples/seed-routes/1-ios-scep-seed-example.json
  certstate send --create-queue --progress updates.jsonl
  certstate send --json updates.jsonl > sent.jsonl    # line, messageId, correlationId per message
  certstate send --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 --dry-run updates.jsonl   # docs/tenants.md
  certstate send --account-url https://myaccount.queue.core.windows.net updates.jsonl

{
    exit_codes(
        (EXIT_OK, "every message is on the input queue"),
        (EXIT_INVALID, "a message is invalid, or FILE is not UTF-8, not JSON, or empty: nothing was sent"),
        (USAGE[0], USAGE[1] + ", or FILE cannot be opened"),
        (STORAGE[0], "the queue service failed, or the queue is missing (what was sent before is said)"),
        INTERRUPTED,
    )
}"""


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "send",
        parents=[common.storage, common.input_queue],
        help="validate a file, then enqueue every message",
        description=(
            "Validate every message of FILE (one JSON object or JSON Lines; - reads stdin); if any is\n"
            "invalid, list the problems and send nothing. Otherwise put each message on the input queue,\n"
            "encoded as host.json's messageEncoding says, and print a summary line."
        ),
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    parser.add_argument("file", metavar="FILE", help="message file, or - for stdin")
    parser.add_argument(
        "--encoding",
        choices=("none", "base64"),
        default=None,
        help="queue message encoding (default: host.json's messageEncoding; the function reads both)",
    )
    parser.add_argument(
        "--tenant",
        type=tenant_id,
        metavar="GUID",
        help="send every message to this tenant (sets tenantId; a message naming another tenant is an error)",
    )
    parser.add_argument("--dry-run", action="store_true", help="set dryRun: validate and resolve, change nothing")
    parser.add_argument("--create-queue", action="store_true", help="create the input queue if it does not exist")
    parser.add_argument(
        "--concurrency", type=count(1), default=8, metavar="N", help="messages in flight at once (default 8)"
    )
    progress_option(parser)
    json_option(parser, "print line, messageId and correlationId of each message as JSON Lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Validate the whole file, then enqueue every message (or none, if any is invalid)."""
    entries = load(args.file, args.tenant)
    if args.dry_run:
        for entry in entries:
            if entry.document is not None:
                entry.document["dryRun"] = True
    invalid = [e for e in entries if e.problems]
    if invalid:
        for entry in invalid:
            for text in entry.describe():
                err(text)
        err(f"nothing sent: {len(invalid)} of {plural(len(entries), 'message')} invalid")
        return EXIT_INVALID
    account = target.account(args)
    counter = progress(args, "sent")
    producer = CertStateProducer(
        account=account,
        queue_name=args.input_queue,
        message_encoding=args.encoding,
        create_queue=args.create_queue,
        concurrency=args.concurrency,
    )
    try:
        summary = producer.send_many([e.document or {} for e in entries], on_progress=counter)
    except StorageError as error:
        counter.finish()
        if error.partial is not None and error.partial.sent:
            err(f"{error.partial.sent} of {len(entries)} sent before the failure")
        raise
    except KeyboardInterrupt:
        counter.finish()
        err(f"interrupted: at least {counter.sent} of {len(entries)} sent")
        raise
    finally:
        producer.close()
    counter.finish()
    if args.json:
        for entry, message_id in zip(entries, summary.message_ids, strict=True):
            correlation = (entry.document or {}).get("correlationId")
            out_json({"line": entry.line, "messageId": message_id, "correlationId": correlation})
    encoding = "raw JSON" if producer.message_encoding == "none" else "base64"
    (err if args.json else out)(
        f"sent {plural(summary.sent, 'message')} to '{producer.queue_name}' at {account.endpoint} "
        f"({encoding}, {summary.elapsed_s:.1f} s)"
    )
    return EXIT_OK
