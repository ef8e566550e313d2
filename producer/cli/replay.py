"""`certstate replay`: put the original message of `failed` outcomes back on the input queue."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any

from producer.cli import target
from producer.cli.console import err, out, out_json, plural, progress
from producer.cli.exits import EXIT_INVALID, EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.options import FORMATTER, Commands, Common, json_option, outcome_filter, progress_option
from producer.cli.scan import Scan, error_code, read_json
from producer.sender import CertStateProducer, encode, storage_errors
from shared.contract.errors import MessageRejected
from shared.contract.outcomes import Status

if TYPE_CHECKING:
    from azure.storage.queue import QueueMessage

EPILOG = f"""\
examples:
  certstate replay --dry-run
  certstate replay --error-code graphForbidden --remove
  certstate replay --correlation-id order-4711 --json

Without --remove the outcomes stay, so running replay again sends them again.

{
    exit_codes(
        (EXIT_OK, "every matching outcome was replayed (or would be, with --dry-run), or none matched"),
        (EXIT_INVALID, "an outcome could not be replayed: it carries no request, or the request is invalid now"),
        USAGE,
        STORAGE,
        INTERRUPTED,
    )
}"""


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "replay",
        parents=[common.storage, common.input_queue, common.result_queue, common.outcomes],
        help="re-enqueue the original message of failed outcomes",
        description=(
            "Find the `failed` outcomes on the result queue that match and put the message each one carries\n"
            "(`request`) back on the input queue, unchanged. The whole result queue is scanned; what is not\n"
            "removed is made visible again at once. Duplicate outcomes of one message are replayed once."
        ),
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be replayed; send and remove nothing")
    parser.add_argument("--remove", action="store_true", help="delete each outcome once its message is re-enqueued")
    progress_option(parser)
    json_option(parser, "print one JSON object per outcome: action, correlationId, messageId, errorCode, ...")
    parser.set_defaults(run=run)


Group = list[tuple["QueueMessage", dict[str, Any]]]


def run(args: argparse.Namespace) -> int:
    """Put the original message of each matching `failed` outcome back on the input queue."""
    account = target.account(args)
    results = account.queue(args.result_queue)
    chosen = outcome_filter(args, status=Status.FAILED.value)
    producer = CertStateProducer(account=account, queue_name=args.input_queue)
    groups: dict[str, Group] = {}
    replayed = skipped = removed = 0
    with (
        storage_errors(account.endpoint, args.result_queue),
        contextlib.closing(results),
        contextlib.closing(producer),
        Scan(results, progress=progress(args, "scanned"), allow_peek=False) as scan,
    ):
        for message in scan:
            outcome = read_json(message.content)
            if outcome is not None and chosen.matches(outcome):
                # At-least-once delivery may have written the same outcome twice: replay it once.
                groups.setdefault(str(outcome.get("messageId") or message.id), []).append((message, outcome))
        for group in groups.values():
            done = _replay_one(group[0][1], producer, dry_run=args.dry_run, as_json=args.json)
            if done and args.remove and not args.dry_run:
                for message, _ in group:
                    scan.delete(message)
                    removed += 1
            replayed += done
            skipped += not done
    summary = err if args.json else out
    scanned = plural(scan.scanned, "message")
    if not groups:
        summary(f"no failed outcomes match ({scanned} scanned on '{args.result_queue}')")
        return EXIT_OK
    if args.dry_run:
        summary(
            f"dry run: {replayed} would be replayed, {skipped} skipped ({scanned} scanned); nothing sent or removed"
        )
    else:
        tail = f"; removed {plural(removed, 'outcome message')}" if args.remove else ""
        summary(f"replayed {replayed} onto '{producer.queue_name}', {skipped} skipped ({scanned} scanned){tail}")
    return EXIT_INVALID if skipped else EXIT_OK


def _replay_one(outcome: dict[str, Any], producer: CertStateProducer, *, dry_run: bool, as_json: bool) -> bool:
    report: dict[str, Any] = {
        "correlationId": outcome.get("correlationId"),
        "messageId": outcome.get("messageId"),
        "errorCode": error_code(outcome),
    }
    what = f"{report['correlationId']} (failed {report['errorCode'] or '-'}, message {report['messageId']})"

    def say(action: str, text: str, **fields: Any) -> None:  # noqa: ANN401 - JSON values
        if as_json:
            out_json({"action": action, **report, **fields})
        else:
            out(text)

    request = outcome.get("request")
    if not isinstance(request, dict):
        omitted = outcome.get("requestOmitted")
        reason = "the outcome carries no request"
        if isinstance(omitted, dict):
            reason += f" (it was cut: {omitted.get('bytes')} bytes; the audit trail keeps it)"
        say("skipped", f"skipped {what}: {reason}", reason=reason)
        return False
    try:
        encode(request, producer.message_encoding)
    except MessageRejected as error:
        reason = f"its request is invalid now: {error.message}"
        say("skipped", f"skipped {what}: {reason}", reason=reason)
        return False
    if dry_run:
        say("wouldReplay", f"would replay {what}")
        return True
    message_id = producer.send(request)
    say("replayed", f"replayed {what} as message {message_id}", newMessageId=message_id)
    return True
