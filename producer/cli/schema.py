"""`certstate schema`: print the JSON Schema of a message or an outcome."""

from __future__ import annotations

import argparse
import sys

from producer.cli.exits import EXIT_OK
from producer.cli.options import Commands, Common


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "schema",
        help="print the JSON Schema of a message or an outcome",
        description="Print the JSON Schema (draft 2020-12) of the input message or of the outcome.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=("message", "outcome"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print a JSON Schema of the contract."""
    from producer.schemas import render  # noqa: PLC0415 - only this command needs it

    sys.stdout.write(render(args.name))
    return EXIT_OK
