"""`certstate replay`: put the original message of `failed` outcomes back on the input queue."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any

from producer.audit import omitted_request
from producer.cli import target
from producer.cli.console import err, out, out_json, plural, progress
from producer.cli.exits import EXIT_INVALID, EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.history import table_option
from producer.cli.options import FORMATTER, Commands, Common, json_option, outcome_filter, progress_option
from producer.cli.scan import Scan, completed_at, error_code, read_json
from producer.sender import CertStateProducer, StorageAccount, encode, storage_errors
from shared.contract.errors import MessageRejected
from shared.contract.outcomes import RequestOmitted, Status

if TYPE_CHECKING:
    from azure.data.tables import TableClient
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
        (
            EXIT_INVALID,
            "an outcome could not be replayed: it carries no request (nor does the audit trail), or the "
            "request is invalid now",
        ),
        USAGE,
        (STORAGE[0], STORAGE[1] + "; or the audit table, read for a cut request, could not be read"),
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
            "(`request`) back on the input queue, unchanged; an outcome that had to leave its request out\n"
            "(`requestOmitted`) is replayed from the audit trail (--table), which keeps it. The whole result\n"
            "queue is scanned; what is not removed is made visible again at once. Duplicate outcomes of one\n"
            "message are replayed once."
        ),
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be replayed; send and remove nothing")
    parser.add_argument("--remove", action="store_true", help="delete each outcome once its message is re-enqueued")
    table_option(parser)
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
    audit = _AuditTrail(account, args.table)
    with (
        storage_errors(account.endpoint, args.result_queue),
        contextlib.closing(results),
        contextlib.closing(producer),
        contextlib.closing(audit),
        Scan(results, progress=progress(args, "scanned"), allow_peek=False) as scan,
    ):
        for message in scan:
            outcome = read_json(message.content)
            if outcome is not None and chosen.matches(outcome):
                # At-least-once delivery may have written the same outcome twice: replay it once.
                groups.setdefault(str(outcome.get("messageId") or message.id), []).append((message, outcome))
        for group in groups.values():
            done = _replay_one(group[0][1], producer, audit, dry_run=args.dry_run, as_json=args.json)
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


def _replay_one(
    outcome: dict[str, Any], producer: CertStateProducer, audit: _AuditTrail, *, dry_run: bool, as_json: bool
) -> bool:
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
        request, reason = audit.request_of(outcome)
        if request is None:
            reason = "the outcome carries no request" + reason
            say("skipped", f"skipped {what}: {reason}", reason=reason)
            return False
        what = what[:-1] + "; its request from the audit trail)"
        report["requestFrom"] = "auditTrail"
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


class _AuditTrail:
    """The audit table, opened only when an outcome had to leave its request out (most replays never need it)."""

    def __init__(self, account: StorageAccount, name: str) -> None:
        self._account = account
        self.name = name
        self._table: TableClient | None = None

    def request_of(self, outcome: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """The request `requestOmitted` names, from the audit trail; or None and why not (to follow "no request")."""
        from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - lazy, as in producer.sender
        from pydantic import ValidationError  # noqa: PLC0415

        message_id = outcome.get("messageId")
        try:
            omitted = RequestOmitted.model_validate(outcome.get("requestOmitted"))
        except ValidationError:
            return None, ""
        if not isinstance(message_id, str):
            return None, f" (it was cut: {omitted.bytes} bytes, and the outcome names no message to look up)"
        if self._table is None:
            self._table = self._account.table(self.name)
        where = f"audit table {self.name!r} at {self._account.endpoint}"
        with storage_errors(
            self._account.endpoint, table=self.name
        ):  # any other failure ends the replay (exit 3): the trail could not be read
            try:
                request = omitted_request(self._table, message_id, completed_at(outcome), omitted)
            except ResourceNotFoundError:  # a table query's only 404: the table does not exist
                return None, f" (it was cut: {omitted.bytes} bytes, and there is no {where} to read it from)"
        if request is None:
            return None, f" (it was cut: {omitted.bytes} bytes, and the {where} does not keep it)"
        return request, ""

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
