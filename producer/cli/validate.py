"""`certstate validate`: check messages offline, each problem by line and field."""

from __future__ import annotations

import argparse

from producer.cli.console import out, plural
from producer.cli.exits import EXIT_CODES, EXIT_INVALID, EXIT_OK, InputError
from producer.cli.files import label, load
from producer.cli.options import Commands, Common


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "validate",
        help="check messages offline (exit 1 if any is invalid)",
        description=(
            "Check messages against the contract without sending anything. FILE holds one JSON object\n"
            "(pretty-printed or not) or JSON Lines: one object per line, blank lines ignored. `-` reads stdin.\n"
            "Each problem is printed as `line N: field: reason`."
        ),
        epilog="examples:\n  certstate validate examples/seed-routes/*.json\n  producer-job | certstate validate -\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="message file(s), or - for stdin")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check every message of every FILE offline; list each problem by line and field."""
    files: list[str] = args.files
    several = len(files) > 1
    total = invalid = 0
    for path in files:
        prefix = f"{label(path)}: " if several else ""
        try:
            entries = load(path)
        except InputError as err:
            out(str(err))
            invalid += 1
            total += 1
            continue
        for entry in entries:
            for text in entry.describe():
                out(prefix + text)
        total += len(entries)
        invalid += sum(1 for e in entries if e.problems)
    verdict = "all valid" if not invalid else f"{invalid} invalid"
    out(f"{plural(total, 'message')} checked: {verdict}")
    return EXIT_INVALID if invalid else EXIT_OK
