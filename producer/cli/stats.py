"""`certstate stats`: approximate depths of the input, result and poison queues; with --by-tenant, per tenant."""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from typing import TYPE_CHECKING

from producer.cli import target
from producer.cli.console import err, out, out_json, safe
from producer.cli.exits import EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.options import FORMATTER, HOME, Commands, Common, json_option
from producer.cli.scan import PAGE, read_json, tenant_id
from producer.sender import QueueNotFound, storage_errors
from shared.contract.envelope import unwrap
from shared.contract.errors import MessageRejected
from shared.contract.outcomes import Status

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

WAITING = "waiting"

EPILOG = f"""\
examples:
  certstate stats
  certstate stats --json | jq .poison.approximateMessageCount
  certstate stats --by-tenant

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
    parser.add_argument(
        "--by-tenant",
        action="store_true",
        help=f"also count, per tenant, the first {PAGE} messages of the input and result queues (peeked)",
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
    tenants: dict[str, Counter[str]] = {}
    for role, name in queues.items():
        with contextlib.closing(account.queue(name)) as queue:
            try:
                with storage_errors(account.endpoint, name):
                    depths[role] = int(queue.get_queue_properties().approximate_message_count or 0)
                    if args.by_tenant and role != "poison":
                        _count_by_tenant(queue, role, tenants)
            except QueueNotFound:
                depths[role] = None
    if args.json:
        document: dict[str, object] = {
            role: {"name": queues[role], "approximateMessageCount": depths[role]} for role in queues
        }
        if args.by_tenant:
            document["byTenant"] = {tenant: dict(counts) for tenant, counts in sorted(tenants.items())}
        out_json(document)
        return EXIT_OK
    width = max(len(name) for name in queues.values()) + len(" (result)")
    out(f"{'QUEUE'.ljust(width)}  MESSAGES (approximate)   {account.endpoint}")
    for role, name in queues.items():
        depth = depths[role]
        out(f"{f'{name} ({role})'.ljust(width)}  {'missing' if depth is None else depth}")
    if args.by_tenant:
        _tenant_table(tenants)
    if depths["poison"]:
        err("the host gave up on the poisoned ones: certstate poison list shows them, poison retry sends them back")
    return EXIT_OK


def _count_by_tenant(queue: QueueClient, role: str, tenants: dict[str, Counter[str]]) -> None:
    """Peek the queue's first messages: waiting updates per tenant (input) or outcomes per tenant and status."""
    for message in queue.peek_messages(max_messages=PAGE):
        document = read_json(message.content)  # raw JSON or base64 of it
        if document is None:
            continue
        if role == "input":
            try:
                update, _ = unwrap(document)  # a deferred copy counts as its message
            except MessageRejected:  # an envelope the function will reject (a forgery): no update waiting
                continue
            tenant = update.get("tenantId")
            key = tenant.lower() if isinstance(tenant, str) and tenant else HOME
            tenants.setdefault(key, Counter())[WAITING] += 1
        else:
            tenants.setdefault((tenant_id(document) or HOME).lower(), Counter())[str(document.get("status"))] += 1


def _tenant_table(tenants: dict[str, Counter[str]]) -> None:
    columns = [WAITING, *(s.value for s in Status)]
    out("")
    out(f"PER TENANT (the first {PAGE} messages of each queue, peeked)")
    out("  ".join([f"{'TENANT':36}", *(c.upper().rjust(9) for c in columns)]))
    for tenant, counts in sorted(tenants.items()):
        out("  ".join([f"{safe(tenant):36}", *(str(counts.get(c, 0)).rjust(9) for c in columns)]))
