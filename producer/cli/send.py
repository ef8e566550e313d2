"""`certstate send`: validate a whole file, then enqueue every message (or none)."""

from __future__ import annotations

import argparse
import json
import sys

from producer.cli import target
from producer.cli.console import Progress, err, out, plural
from producer.cli.exits import EXIT_CODES, EXIT_INVALID, EXIT_OK
from producer.cli.files import load
from producer.cli.options import Commands, Common, count
from producer.cli.target import TARGETS
from producer.sender import CertStateProducer, StorageError


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "send",
        parents=[common.storage, common.input_queue],
        help="validate a file, then enqueue every message",
        description=(
            "Validate every message of FILE (one JSON object or JSON Lines; - reads stdin); if any is\n"
            "invalid, list the problems and send nothing (exit 1). Otherwise put each message on the input\n"
            "queue, encoded as host.json's messageEncoding says, and print a summary line."
        ),
        epilog=(
            "examples:\n  certstate send examples/seed-routes/1-ios-scep-seed-example.json\n"
            "  certstate send --create-queue --progress updates.jsonl\n"
            "  certstate send --json updates.jsonl > sent.jsonl    # line, messageId, correlationId per message\n\n"
            f"{TARGETS}\n\n{EXIT_CODES}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="message file, or - for stdin")
    parser.add_argument(
        "--encoding",
        choices=("none", "base64"),
        default=None,
        help="queue message encoding (default: host.json's messageEncoding; the function reads both)",
    )
    parser.add_argument("--create-queue", action="store_true", help="create the input queue if it does not exist")
    parser.add_argument(
        "--concurrency", type=count(1), default=8, metavar="N", help="messages in flight at once (default 8)"
    )
    parser.add_argument("--progress", action="store_true", help="show progress on stderr even when it is not a TTY")
    parser.add_argument("--json", action="store_true", help="print line, messageId and correlationId as JSON Lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Validate the whole file, then enqueue every message (or none, if any is invalid)."""
    entries = load(args.file)
    invalid = [e for e in entries if e.problems]
    if invalid:
        for entry in invalid:
            for text in entry.describe():
                err(text)
        err(f"nothing sent: {len(invalid)} of {plural(len(entries), 'message')} invalid")
        return EXIT_INVALID
    account = target.account(args)
    progress = Progress(enabled=args.progress or sys.stderr.isatty())
    producer = CertStateProducer(
        account=account,
        queue_name=args.input_queue,
        message_encoding=args.encoding,
        create_queue=args.create_queue,
        concurrency=args.concurrency,
    )
    try:
        summary = producer.send_many([e.document or {} for e in entries], on_progress=progress)
    except StorageError as error:
        progress.finish()
        if error.partial is not None and error.partial.sent:
            err(f"{error.partial.sent} of {len(entries)} sent before the failure")
        raise
    except KeyboardInterrupt:
        progress.finish()
        err(f"interrupted: at least {progress.sent} of {len(entries)} sent")
        raise
    finally:
        producer.close()
    progress.finish()
    if args.json:
        for entry, message_id in zip(entries, summary.message_ids, strict=True):
            correlation = (entry.document or {}).get("correlationId")
            out(json.dumps({"line": entry.line, "messageId": message_id, "correlationId": correlation}))
    encoding = "raw JSON" if producer.message_encoding == "none" else "base64"
    report = err if args.json else out
    report(
        f"sent {plural(summary.sent, 'message')} to {producer.queue_name!r} at {account.endpoint} "
        f"({encoding}, {summary.elapsed_s:.1f} s)"
    )
    return EXIT_OK
