"""`certstate tenants`: the tenant registry (add, remove, list, show, pause, resume) and consent checks.

Rows go to the registry table of the function's storage account (`REGISTRY_TABLE_NAME`) with the
operator's own credentials (Storage Table Data Contributor on that table); the function reads them
within `REGISTRY_REFRESH_SECONDS`. `check` puts a consent check on the input queue and waits for its
outcome on the result queue: the function asks for the tenant's token through its own credential path
and reads one id from Intune, writing nothing (docs/tenants.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import uuid
from typing import Any, Final

from producer.cli import target
from producer.cli.console import err, out, out_json
from producer.cli.exits import EXIT_INVALID, EXIT_OK, INTERRUPTED, STORAGE, USAGE, exit_codes
from producer.cli.options import FORMATTER, Commands, Common, count, json_option, seconds, tenant_id
from producer.cli.scan import Scan, read_json
from producer.cli.tables import row
from producer.sender import CertStateProducer, storage_errors
from producer.tenants import Registry, RegistryRefused
from shared.contract.tenants import DEFAULT_REGISTRY_TABLE, INTUNE_TENANT_WRITE_LIMIT, TenantEntry

COLUMNS: Final = (("TENANT", 36), ("NAME", 32), ("RESERVE", 7), ("STATE", 6), ("CHANGED AT", 20))
APPLIES: Final = "the function applies it at its next registry read (REGISTRY_REFRESH_SECONDS, default 30 s)"
REMOVED: Final = "its messages, queued or deferred, are rejected tenantNotAllowed from then on, with no token request"
PAUSED: Final = (
    "its messages, queued and deferred, wait (deferred copies, rechecked every 1-2 refresh intervals) until it "
    "is resumed; one still waiting after DEFERRAL_MAX_SECONDS (default 1 h) ends failed / tenantPaused"
)
CHECK_EXITS: Final = (
    (EXIT_OK, "consented: a token was issued and the app role reads Intune"),
    (EXIT_INVALID, "not consented (Entra's AADSTS code is shown), role missing, not served, or no outcome in time"),
)


def register(commands: Commands, common: Common) -> None:
    """Add the command and its subcommands to the parser."""
    parser = commands.add_parser(
        "tenants",
        help="the tenant registry: add, remove, list, show, pause, resume; check a tenant's consent",
        description=(
            "The customer tenants this deployment serves, in its registry table (docs/tenants.md). Changes\n"
            f"need no restart: {APPLIES}."
        ),
        epilog=(
            "examples:\n"
            "  certstate tenants add 72f988bf-86f1-41af-91ab-2d7cd011db47 --name Contoso --reserve 40 --paused\n"
            "  certstate tenants check 72f988bf-86f1-41af-91ab-2d7cd011db47   # consented? exit 0\n"
            "  certstate tenants resume 72f988bf-86f1-41af-91ab-2d7cd011db47\n"
            "  certstate tenants list --json\n\nEach subcommand has its own --help."
        ),
        formatter_class=FORMATTER,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    table = argparse.ArgumentParser(add_help=False)
    registry_table_option(table, "--table")
    parents = [common.storage, table]
    refused = (
        EXIT_INVALID,
        "refused: the line says why (a duplicate, the home tenant, an unknown tenant, a bad value)",
    )
    done = exit_codes((EXIT_OK, "done"), refused, USAGE, STORAGE)

    def action(name: str, summary: str, description: str, run: Any, *, tenant: bool = True) -> argparse.ArgumentParser:  # noqa: ANN401
        sub = actions.add_parser(
            name, parents=parents, help=summary, description=description, epilog=done, formatter_class=FORMATTER
        )
        if tenant:
            sub.add_argument("tenant", type=tenant_id, metavar="TENANT", help="the tenant's GUID")
        json_option(sub, "print the result as JSON")
        sub.set_defaults(run=run)
        return sub

    add = action("add", "register a tenant", f"Register a customer tenant; {APPLIES}.", run_add)
    add.add_argument("--name", required=True, metavar="NAME", help="display name (tables, the workbook)")
    add.add_argument(
        "--reserve",
        type=count(0),
        default=0,
        metavar="N",
        help=f"writes per window other tools use in that tenant, of Intune's {INTUNE_TENANT_WRITE_LIMIT} (default 0)",
    )
    add.add_argument("--paused", action="store_true", help="register it paused (check its consent, then resume)")
    add.add_argument(
        "--home-tenant",
        type=tenant_id,
        default=os.environ.get("HOME_TENANT_ID") or None,
        metavar="GUID",
        help="the deployment's own tenant, refused here (default: $HOME_TENANT_ID)",
    )
    action("remove", "unregister a tenant", f"Remove the tenant's row: {REMOVED}; {APPLIES}.", run_remove)
    action("list", "every registered tenant", "List every registered tenant, by name.", run_list, tenant=False)
    action("show", "one registered tenant", "Show one registered tenant.", run_show)
    action("pause", "hold a tenant's messages", f"Pause the tenant: {PAUSED}; {APPLIES}.", run_pause)
    action("resume", "serve a paused tenant again", f"Resume the tenant; {APPLIES}.", run_resume)
    check = actions.add_parser(
        "check",
        parents=[common.storage, common.input_queue, common.result_queue],
        help="check a tenant's consent through the function (no write)",
        description=(
            "Put a consent check on the input queue and wait for its outcome: the function asks Entra ID for\n"
            "the tenant's token with its own federated credential and reads one id from Intune; nothing is\n"
            "written. The tenant must be registered (paused is fine) or in SERVED_TENANT_IDS."
        ),
        epilog=exit_codes(*CHECK_EXITS, USAGE, STORAGE, INTERRUPTED),
        formatter_class=FORMATTER,
    )
    check.add_argument("tenant", type=tenant_id, metavar="TENANT", help="the tenant's GUID")
    check.add_argument(
        "--wait", type=seconds, default=120.0, metavar="SECONDS", help="how long to wait for the outcome (default 120)"
    )
    check.add_argument("--interval", type=count(1), default=1, metavar="SECONDS", help="between reads (default 1)")
    json_option(check, "print the outcome as JSON")
    check.set_defaults(run=run_check)


def registry_table_option(parser: argparse.ArgumentParser, flag: str = "--registry-table") -> None:
    """The registry table, as `REGISTRY_TABLE_NAME` names it (`dest` is `table` or `registry_table`)."""
    parser.add_argument(
        flag,
        default=os.environ.get("REGISTRY_TABLE_NAME") or DEFAULT_REGISTRY_TABLE,
        metavar="NAME",
        help=f"tenant registry table, for display names (default: $REGISTRY_TABLE_NAME, else {DEFAULT_REGISTRY_TABLE})",
    )


def _registry(args: argparse.Namespace) -> tuple[Registry, str]:
    account = target.account(args)
    return Registry(account.table(args.table), getattr(args, "home_tenant", None)), account.endpoint


def _refused(args: argparse.Namespace, error: RegistryRefused) -> int:
    err(f"certstate tenants {args.action}: error: {error}")
    return EXIT_INVALID


def _as_json(entry: TenantEntry) -> dict[str, Any]:
    return {
        "tenantId": entry.tenant_id,
        "displayName": entry.display_name,
        "writeReserve": entry.write_reserve,
        "paused": entry.paused,
        "changedAt": entry.changed_at.isoformat() if entry.changed_at else None,
    }


def _line(entry: TenantEntry) -> str:
    changed = entry.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ") if entry.changed_at else None
    state = "paused" if entry.paused else "active"
    return row(COLUMNS, [entry.tenant_id, entry.display_name, entry.write_reserve, state, changed])


def _print(args: argparse.Namespace, entry: TenantEntry, note: str) -> int:
    if args.json:
        out_json(_as_json(entry))
        err(note)
    else:
        out(row(COLUMNS, [name for name, _ in COLUMNS]))
        out(_line(entry))
        err(note)
    return EXIT_OK


def _run(args: argparse.Namespace, work: Any) -> int:  # noqa: ANN401 - one registry call
    registry, endpoint = _registry(args)
    try:
        with storage_errors(endpoint, table=args.table, role="registry"):
            return int(work(registry))
    except RegistryRefused as error:
        return _refused(args, error)


def run_add(args: argparse.Namespace) -> int:
    """Register the tenant."""

    def add(registry: Registry) -> int:
        entry = registry.add(args.tenant, args.name, reserve=args.reserve, paused=args.paused)
        then = "paused: check its consent (certstate tenants check), then resume it" if entry.paused else "active"
        return _print(args, entry, f"added {entry.tenant_id} ({then}); {APPLIES}")

    return _run(args, add)


def run_remove(args: argparse.Namespace) -> int:
    """Unregister the tenant."""

    def remove(registry: Registry) -> int:
        entry = registry.remove(args.tenant)
        return _print(args, entry, f"removed {entry.tenant_id}: {REMOVED}; {APPLIES}")

    return _run(args, remove)


def run_show(args: argparse.Namespace) -> int:
    """Show one tenant."""
    return _run(args, lambda registry: _print(args, registry.show(args.tenant), ""))


def run_list(args: argparse.Namespace) -> int:
    """List every tenant."""

    def listing(registry: Registry) -> int:
        entries, problems = registry.list()
        if args.json:
            for entry in entries:
                out_json(_as_json(entry))
        else:
            out(row(COLUMNS, [name for name, _ in COLUMNS]))
            for entry in entries:
                out(_line(entry))
        for problem in problems:
            err(problem)
        paused = sum(e.paused for e in entries)
        err(f"{len(entries)} registered, {paused} paused, in table '{args.table}'")
        return EXIT_OK

    return _run(args, listing)


def _set_paused(args: argparse.Namespace, paused: bool) -> int:
    def change(registry: Registry) -> int:
        entry, changed = registry.set_paused(args.tenant, paused)
        word = "paused" if paused else "resumed"
        if not changed:
            return _print(args, entry, f"{entry.tenant_id} was already {'paused' if paused else 'active'}")
        effect = PAUSED if paused else "its waiting messages go on as they come back"
        return _print(args, entry, f"{word} {entry.tenant_id}: {effect}; {APPLIES}")

    return _run(args, change)


def run_pause(args: argparse.Namespace) -> int:
    """Pause the tenant."""
    return _set_paused(args, paused=True)


def run_resume(args: argparse.Namespace) -> int:
    """Resume the tenant."""
    return _set_paused(args, paused=False)


def run_check(args: argparse.Namespace) -> int:
    """Send a consent check and wait for its outcome."""
    correlation = f"consent-check-{uuid.uuid4().hex[:12]}"
    account = target.account(args)
    with CertStateProducer(account=account, queue_name=args.input_queue) as producer:
        producer.send_check(args.tenant, correlation)
    err(f"consent check {correlation} sent for {args.tenant}; waiting up to {args.wait:g} s for its outcome")
    deadline = time.monotonic() + args.wait
    queue = account.queue(args.result_queue)
    with storage_errors(account.endpoint, args.result_queue), contextlib.closing(queue):
        while True:
            outcome = _find(queue, correlation)
            if outcome is not None:
                return _report(args, outcome)
            if time.monotonic() >= deadline:
                err(f"certstate tenants check: error: no outcome for {correlation} within {args.wait:g} s")
                return EXIT_INVALID
            time.sleep(args.interval)


def _find(queue: Any, correlation: str) -> dict[str, Any] | None:  # noqa: ANN401 - a QueueClient
    """The check's outcome, removed from the result queue (it answers this command only)."""
    with Scan(queue) as scan:
        for message in scan:
            outcome = read_json(message.content)
            if outcome is not None and outcome.get("correlationId") == correlation:
                if not scan.peek_only:
                    scan.delete(message)
                return outcome
    return None


def _report(args: argparse.Namespace, outcome: dict[str, Any]) -> int:
    consent: dict[str, Any] = outcome["consent"] if isinstance(outcome.get("consent"), dict) else {}
    error: dict[str, Any] = outcome["error"] if isinstance(outcome.get("error"), dict) else {}
    state = consent.get("state")
    if args.json:
        out_json(outcome)
    if state == "consented":
        line = f"{args.tenant}: consented"
    elif state == "notConsented":
        line = (
            f"{args.tenant}: not consented ({consent.get('entraCode')}): send the admin consent link (docs/tenants.md)"
        )
    elif state == "roleMissing":
        line = f"{args.tenant}: role missing: consented, but DeviceManagementConfiguration.ReadWrite.All is not granted"
    else:
        line = f"{args.tenant}: {outcome.get('status')} / {error.get('code')}: {error.get('message')}"
        if error.get("code") == "tenantNotAllowed":
            line += " (just added? the function reads the registry every REGISTRY_REFRESH_SECONDS: check again then)"
    (err if args.json else out)(line)
    return EXIT_OK if state == "consented" else EXIT_INVALID
