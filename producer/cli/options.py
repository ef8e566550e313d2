"""Option types and the option groups several commands share (where the queues are, which queues)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from shared.contract.limits import DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE, queue_name_problem

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `add_subparsers()` returns; each command module registers itself on it."""


def queue_name(value: str) -> str:
    """A valid queue name, or argparse's usage error naming the rule it breaks."""
    if problem := queue_name_problem(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def count(minimum: int) -> Callable[[str], int]:
    """A whole number of at least `minimum`."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            msg = f"expected a whole number >= {minimum}, not {value!r}"
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
        msg = f"expected seconds between 0 and 3600, not {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


@dataclass(frozen=True)
class Common:
    """Parent parsers a command includes for the options it takes."""

    storage: argparse.ArgumentParser
    input_queue: argparse.ArgumentParser
    result_queue: argparse.ArgumentParser


def common_options() -> Common:
    """The shared option groups, built once per parser."""
    storage = argparse.ArgumentParser(add_help=False)
    where = storage.add_argument_group("where the queues are (default: local Azurite on 127.0.0.1:10001)")
    # Not a mutually exclusive group: argparse drops a parent's group title for those (StorageAccount checks).
    where.add_argument(
        "--connection-string",
        metavar="CS",
        help="storage connection string (default: $CERTSTATE_CONNECTION_STRING, then $AzureWebJobsStorage)",
    )
    where.add_argument(
        "--account-url",
        metavar="URL",
        help="https://<account>.queue.core.windows.net, signed in with DefaultAzureCredential",
    )
    where.add_argument(
        "--retries", type=count(0), default=3, metavar="N", help="retries of a failed storage call (default 3)"
    )
    where.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS", help="connect timeout (default 10)")
    where.add_argument("--verbose", "-v", action="store_true", help="show the Azure SDK's log on stderr")
    input_queue = _queue_option("input", "INPUT_QUEUE_NAME", DEFAULT_INPUT_QUEUE)
    result_queue = _queue_option("result", "RESULT_QUEUE_NAME", DEFAULT_RESULT_QUEUE)
    return Common(storage, input_queue, result_queue)


def _queue_option(role: str, variable: str, default: str) -> argparse.ArgumentParser:
    """`--<role>-queue NAME`; unset, it is filled in from the environment once parsed (program.main)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        f"--{role}-queue",
        type=queue_name,
        default=None,
        metavar="NAME",
        help=f"{role} queue (default: ${variable} or {default})",
    )
    return parent
