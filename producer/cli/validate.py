"""`certstate validate`: check messages offline, each problem by line and field."""

from __future__ import annotations

import argparse

from producer.cli.console import err, out, out_json, plural
from producer.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_USAGE, INTERRUPTED, InputError, exit_codes
from producer.cli.files import Entry, label, load
from producer.cli.options import FORMATTER, Commands, Common, json_option

EPILOG = f"""\
examples:
  certstate validate examples/seed-routes/*.json
  producer-job | certstate validate -
  certstate validate --json updates.jsonl | jq 'select(.valid | not)'

{
    exit_codes(
        (EXIT_OK, "every message of every FILE is valid"),
        (EXIT_INVALID, "a message breaks the contract, or a FILE is not UTF-8, not JSON, or empty"),
        (EXIT_USAGE, "unknown option, or a FILE cannot be opened"),
        INTERRUPTED,
    )
}"""


def register(commands: Commands, common: Common) -> None:
    """Add the command to the parser."""
    parser = commands.add_parser(
        "validate",
        help="check messages offline (exit 1 if any is invalid)",
        description=(
            "Check messages against the contract without sending anything. FILE holds one JSON object\n"
            "(pretty-printed or not) or JSON Lines: one object per line, blank lines ignored. `-` reads stdin.\n"
            "Each problem is printed as `line N: field: reason`, then one summary line."
        ),
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="message file(s), or - for stdin")
    json_option(parser, "print one JSON object per message: file, line, valid, correlationId, problems")
    parser.set_defaults(run=run)


def _report(path: str, entry: Entry) -> dict[str, object]:
    return {
        "file": label(path),
        "line": entry.line,
        "valid": not entry.problems,
        "correlationId": (entry.document or {}).get("correlationId"),
        "problems": [{"field": p.field, "message": p.message} for p in entry.problems],
    }


def run(args: argparse.Namespace) -> int:
    """Check every message of every FILE offline; list each problem by line and field."""
    files: list[str] = args.files
    several = len(files) > 1
    checked = invalid = unreadable = 0
    for path in files:
        try:
            entries = load(path)
        except InputError as error:
            unreadable += 1
            if args.json:
                problem = {"field": "file", "message": str(error)}
                out_json({"file": label(path), "line": None, "valid": False, "problems": [problem]})
            else:
                out(str(error))
            continue
        for entry in entries:
            if args.json:
                out_json(_report(path, entry))
            else:
                for text in entry.describe():
                    out(f"{label(path)}: {text}" if several else text)
        checked += len(entries)
        invalid += sum(1 for e in entries if e.problems)
    summary = f"{plural(checked, 'message')} checked"
    if checked:
        summary += f": {invalid} invalid" if invalid else ": all valid"
    if unreadable:
        summary += f"; {plural(unreadable, 'file')} could not be read as messages"
    (err if args.json else out)(summary)
    return EXIT_INVALID if invalid or unreadable else EXIT_OK
