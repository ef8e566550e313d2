"""`certstate history`: what happened to a message, device configuration, state or tenant, over a time range.

Answered from the audit trail (producer/audit.py, docs/operations.md "Audit trail"), which keeps every
outcome longer than the result queue's seven days; nothing is taken off any queue.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from producer.audit import HistoryQuery, history
from producer.cli import target
from producer.cli.console import err, out, out_json, safe
from producer.cli.exits import EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.options import FORMATTER, Commands, Common, json_option, when
from producer.sender import storage_errors
from shared.contract.audit import DEFAULT_AUDIT_TABLE, AuditSummary

NOTHING_FOUND: Final = 1

EPILOG = f"""\
examples:
  certstate history --correlation-id order-4711 --since 30d
  certstate history --state-id d99bc884-c884-d99b-84c8-9bd984c89bd9 --since 2026-10-01 --until 2026-11-01
  certstate history --tenant-id <guid> --status rejected --since 1d --json

{
    exit_codes(
        (EXIT_OK, "found at least one outcome"),
        (NOTHING_FOUND, "nothing matched"),
        USAGE,
        (STORAGE[0], "the table service is unreachable, refused the credentials, or the audit table is missing"),
        INTERRUPTED,
    )
}"""


def table_option(parser: argparse.ArgumentParser) -> None:
    """`--table`: the audit table, as `AUDIT_TABLE_NAME` names it."""
    parser.add_argument("--table", default=DEFAULT_AUDIT_TABLE, metavar="NAME", help="audit table (AUDIT_TABLE_NAME)")


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "history",
        parents=[common.storage],
        help="what happened to a message, device configuration, state or tenant (from the audit trail)",
        description='Outcomes from the audit trail (docs/operations.md, "Audit trail"), oldest first.',
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    what = parser.add_argument_group("what to look for (any combination)")
    what.add_argument("--correlation-id", metavar="ID")
    what.add_argument("--device-configuration-id", metavar="ID")
    what.add_argument("--state-id", metavar="ID", help="managedDeviceCertificateStateId")
    what.add_argument("--message-id", metavar="ID", help="the queue message id (an outcome's messageId)")
    what.add_argument("--tenant-id", metavar="GUID")
    what.add_argument("--status", choices=["succeeded", "validated", "rejected", "expired", "failed"])
    period = parser.add_argument_group("when the messages were first enqueued")
    period.add_argument("--since", type=when, default=None, metavar="WHEN", help="ISO 8601 or 15m / 2h / 1d ago (7d)")
    period.add_argument("--until", type=when, default=None, metavar="WHEN", help="default: now")
    table_option(parser)
    json_option(parser, "one JSON object per outcome")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the outcomes that match; exit 1 if there are none (as grep does)."""
    account = target.account(args)
    now = datetime.now(UTC)
    query = HistoryQuery(
        since=args.since or now - timedelta(days=7),
        until=args.until or now,
        message_id=args.message_id,
        correlation_id=args.correlation_id,
        device_configuration_id=args.device_configuration_id,
        managed_device_certificate_state_id=args.state_id,
        tenant_id=args.tenant_id,
        status=args.status,
    )
    with storage_errors(account.endpoint, table=args.table):
        found = history(account.table(args.table), query)
    for summary in found:
        if args.json:
            out_json(_wire(summary))
        else:
            out(_line(summary))
    span = f"{query.since:%Y-%m-%d %H:%M} .. {query.until:%Y-%m-%d %H:%M} UTC"
    err(f"{len(found)} outcome(s) of messages enqueued {span}")
    return EXIT_OK if found else NOTHING_FOUND


def _wire(summary: AuditSummary) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in AuditSummary.properties(summary).items()
    }


def _line(summary: AuditSummary) -> str:
    """One outcome; values escaped before they are padded, so the columns line up with what shows."""
    fields = asdict(summary)
    return "  ".join(
        [
            f"{summary.completed_at:%Y-%m-%d %H:%M:%S}",
            f"{safe(summary.status):<9}",
            f"{safe(summary.code or '-'):<22}",
            f"http {summary.http_status or '-':<4}",
            f"{summary.correlation_id or '-'}",
            f"message {summary.message_id}",
            f"deq {fields['dequeue_count']}",
        ]
    )
