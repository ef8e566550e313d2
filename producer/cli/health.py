"""`certstate health`: is the deployment working? A dryRun sent and its outcome read back.

The function validates and resolves a `dryRun` message but sends nothing to Graph, so nothing in
Intune changes. The outcome is read back from the audit trail, not taken off the result queue, which
belongs to the producers' consumers.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from producer.audit import HistoryQuery, history
from producer.cli import target
from producer.cli.console import err, out
from producer.cli.exits import EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.history import table_option
from producer.cli.options import FORMATTER, Commands, Common
from producer.sender import CertStateProducer, storage_errors
from shared.contract.audit import AuditSummary

if TYPE_CHECKING:
    from azure.data.tables import TableClient

UNHEALTHY: Final = 4
NO_OUTCOME: Final = 5
HEALTH_PREFIX: Final = "health-"
"""The correlation id prefix of health-check messages (consumers may ignore their `validated` outcomes)."""
EPILOG = f"""\
examples:
  certstate health --account-url https://<account>.queue.core.windows.net --input-queue <name>

{
    exit_codes(
        (EXIT_OK, "healthy: the dryRun's outcome is validated"),
        USAGE,
        STORAGE,
        (UNHEALTHY, "another outcome came back: it says what is wrong"),
        (NO_OUTCOME, "no outcome within --wait: no instance running, a backlog ahead, or no audit trail"),
        INTERRUPTED,
    )
}"""
HEALTH_MESSAGE: Final = {
    "profileType": "iosScepCertificateProfile",
    "deviceConfigurationId": "00000000-0000-0000-0000-000000000000",
    "managedDeviceCertificateStateId": "00000000-0000-0000-0000-000000000000",
    "dryRun": True,
    "update": {"certificateKeyUsage": "digitalSignature"},
}


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "health",
        parents=[common.storage, common.input_queue],
        help="send a dryRun and read its outcome back: is the deployment working? (changes nothing in Intune)",
        description=run.__doc__,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    table_option(parser)
    parser.add_argument(
        "--wait", type=float, default=120.0, metavar="SECONDS", help="how long to wait for the outcome (default 120)"
    )
    parser.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Send a dryRun message and read its outcome back from the audit trail.

    0: the outcome is `validated` (queue, function, validation, outcome and audit trail all work);
    4: another outcome came back (it says what is wrong); 5: no outcome within --wait.
    """
    account = target.account(args)
    correlation_id = f"{HEALTH_PREFIX}{uuid.uuid4()}"
    sent_at = datetime.now(UTC)
    producer = CertStateProducer(account=account, queue_name=args.input_queue)
    try:
        message_id = producer.send({"correlationId": correlation_id, **HEALTH_MESSAGE})
    finally:
        producer.close()
    out(f"sent dryRun {correlation_id} (message {message_id}) to {producer.queue_name!r} at {account.endpoint}")
    with storage_errors(account.endpoint, table=args.table):
        summary = _wait_for(account.table(args.table), correlation_id, sent_at, args.wait, args.poll)
    if summary is None:
        err(f"no outcome for {correlation_id} within {args.wait:.0f} s: is the function running? (docs/operations.md)")
        return NO_OUTCOME
    took = (summary.completed_at - sent_at).total_seconds()
    out(f"outcome {summary.status} after {took:.1f} s (code {summary.code or '-'}, deliveries {summary.dequeue_count})")
    return EXIT_OK if summary.status == "validated" else UNHEALTHY


def _wait_for(
    table: TableClient, correlation_id: str, sent_at: datetime, wait: float, poll: float
) -> AuditSummary | None:
    """The outcome once it is in the audit trail (a table the function creates on first use locally)."""
    from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - lazy

    query = HistoryQuery(
        since=sent_at - timedelta(minutes=5), until=sent_at + timedelta(hours=1), correlation_id=correlation_id
    )
    deadline = time.monotonic() + wait
    while True:
        try:
            found = history(table, query)
        except ResourceNotFoundError:
            found = []
        if found:
            return found[-1]
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)
