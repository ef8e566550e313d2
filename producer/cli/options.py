"""Option types and the option groups several commands share: where the queues are, which queues, which outcomes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from producer.cli.scan import Filter, parse_when
from shared.contract.limits import DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE, queue_name_problem
from shared.contract.messages import canonical_guid

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `add_subparsers()` returns; each command module registers itself on it."""
FORMATTER = argparse.RawDescriptionHelpFormatter

TARGETS = """\
Local Azurite on 127.0.0.1:10001 unless one of these names another account (first wins):
  --account-url https://<account>.queue.core.windows.net (signs in with DefaultAzureCredential:
  az login, a managed identity, AZURE_* variables); --connection-string; $CERTSTATE_CONNECTION_STRING;
  $AzureWebJobsStorage (a connection string); $AzureWebJobsStorage__queueServiceUri (an account URL,
  as the deployed app has it). `python -m devstack up` starts a local stack these defaults reach."""


def queue_name(value: str) -> str:
    """A valid queue name, or argparse's usage error naming the rule it breaks."""
    if problem := queue_name_problem(value):
        raise argparse.ArgumentTypeError(problem)
    return value


HOME = "home"
"""How the CLI names the home tenant (a message without `tenantId`)."""


def tenant_id(value: str) -> str:
    """A tenant GUID, lower-cased as the function compares it."""
    try:
        return canonical_guid(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def count(minimum: int) -> Callable[[str], int]:
    """A whole number of at least `minimum`."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            msg = f"expected a whole number >= {minimum}, not '{value}'"
            raise argparse.ArgumentTypeError(msg)
        return number

    return parse


def seconds(value: str) -> float:
    """Seconds, more than 0 and at most an hour."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number <= 3600:
        msg = f"expected seconds between 0 and 3600, not '{value}'"
        raise argparse.ArgumentTypeError(msg)
    return number


def when(value: str) -> datetime:
    """A point in time: ISO 8601 (`2026-11-27T14:00:00Z`, `2026-11-27`) or a time ago (`15m`, `2h`, `1d`)."""
    try:
        return parse_when(value)
    except ValueError:
        msg = f"expected a time such as 2026-11-27T14:00:00Z, 2026-11-27 or 15m / 2h / 1d ago, not '{value}'"
        raise argparse.ArgumentTypeError(msg) from None


def outcome_filter(args: argparse.Namespace, **fixed: str) -> Filter:
    """The `which outcomes` options as a `Filter`; `fixed` values (replay's status) win."""
    chosen = {
        "status": getattr(args, "status", None),
        "correlation_id": args.correlation_id,
        "error_code": args.error_code,
        "tenant": args.tenant,
        "since": args.since,
        "until": args.until,
    }
    return Filter(**{**chosen, **fixed})


@dataclass(frozen=True)
class Common:
    """Parent parsers a command includes for the options it takes."""

    storage: argparse.ArgumentParser
    input_queue: argparse.ArgumentParser
    result_queue: argparse.ArgumentParser
    outcomes: argparse.ArgumentParser


def common_options() -> Common:
    """The shared option groups, built once per parser."""
    storage = argparse.ArgumentParser(add_help=False)
    where = storage.add_argument_group("where the queues are", TARGETS)
    # Not a mutually exclusive group: argparse drops a parent's group title for those (StorageAccount checks).
    where.add_argument("--connection-string", metavar="CS", help="a storage connection string")
    where.add_argument(
        "--account-url", metavar="URL", help="https://<account>.queue.core.windows.net, with DefaultAzureCredential"
    )
    where.add_argument(
        "--retries", type=count(0), default=3, metavar="N", help="retries of a failed storage call (default 3)"
    )
    where.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS", help="connect timeout (default 10)")
    where.add_argument("--verbose", "-v", action="store_true", help="show the Azure SDK's log on stderr")
    input_queue = _queue_option("input", "INPUT_QUEUE_NAME", DEFAULT_INPUT_QUEUE)
    result_queue = _queue_option("result", "RESULT_QUEUE_NAME", DEFAULT_RESULT_QUEUE)
    outcomes = argparse.ArgumentParser(add_help=False)
    which = outcomes.add_argument_group("which outcomes (all given must match)")
    which.add_argument("--correlation-id", metavar="ID", help="correlationId")
    which.add_argument("--error-code", metavar="CODE", help="error code (graphThrottled, validationFailed, …)")
    which.add_argument("--tenant", metavar="ID", help="target.tenantId (outcomes of messages that named a tenant)")
    which.add_argument(
        "--since", type=when, metavar="WHEN", help="completedAt at or after WHEN (ISO 8601, or 15m / 2h / 1d ago)"
    )
    which.add_argument("--until", type=when, metavar="WHEN", help="completedAt before WHEN")
    return Common(storage, input_queue, result_queue, outcomes)


def _queue_option(role: str, variable: str, default: str) -> argparse.ArgumentParser:
    """`--<role>-queue NAME`; unset, it is filled in from the environment once parsed (program.main)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        f"--{role}-queue",
        type=queue_name,
        default=None,
        metavar="NAME",
        help=f"{role} queue (default: ${variable}, else {default})",
    )
    return parent


def json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--json`: the result as JSON Lines on stdout, notes and the summary staying on stderr."""
    parser.add_argument("--json", action="store_true", help=f"{what}; notes and the summary go to stderr")


def progress_option(parser: argparse.ArgumentParser) -> None:
    """`--progress`: the counter on stderr even when it is not a terminal."""
    parser.add_argument("--progress", action="store_true", help="show progress on stderr even when it is not a TTY")
