"""`certstate schema`: print the JSON Schema of a message or an outcome."""

from __future__ import annotations

import argparse
import sys

from producer.cli.exits import EXIT_OK, USAGE, exit_codes
from producer.cli.options import FORMATTER, Commands, Common

NAMES = ("message", "outcome", "consent-check")


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "schema",
        help="print the JSON Schema of a message, an outcome or a consent check",
        description=(
            "Print the JSON Schema (draft 2020-12) of the input message, the outcome or a consent check\n"
            "(docs/contract.md section 7); it is JSON already."
        ),
        epilog="examples:\n  certstate schema message > message.schema.json\n\n"
        + exit_codes((EXIT_OK, "printed"), (USAGE[0], "unknown option, or not one of message, outcome, consent-check")),
        formatter_class=FORMATTER,
    )
    # The metavar is what usage shows and what "the following arguments are required" names: the same text.
    parser.add_argument("name", choices=NAMES, metavar="{" + ",".join(NAMES) + "}", help="which schema")
    parser.add_argument("--json", action="store_true", help="accepted for symmetry: the output is always JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print a JSON Schema of the contract."""
    from producer.schemas import render  # noqa: PLC0415 - only this command needs it

    sys.stdout.write(render(args.name))
    return EXIT_OK
