"""The whole command line: the top-level help, and one sub-parser per command module."""

from __future__ import annotations

import argparse
from importlib import metadata
from typing import Final

from producer.cli import replay, results, schema, send, stats, validate
from producer.cli.exits import EXIT_CODES
from producer.cli.options import common_options
from producer.cli.target import TARGETS

PROG: Final = "certstate"
COMMANDS: Final = (validate, send, results, replay, stats, schema)
"""Each module has `register(commands, common)` (its options and help) and `run(args) -> exit code`."""

EPILOG = f"""\
examples:
  certstate validate examples/seed-routes/*.json      check messages offline, line and field of each error
  certstate send --create-queue examples/dry-run.json  enqueue to local Azurite, creating the queue
  certstate send updates.jsonl                         one message per line (JSON Lines), all or nothing
  certstate results --follow                           watch outcomes arrive (Ctrl-C stops)
  certstate results --status failed --json             failed outcomes as JSON Lines, for jq
  certstate replay --error-code graphThrottled --remove
  certstate stats                                      queue depths: input, results, poison
  certstate schema message > message.schema.json
  certstate send --account-url https://myaccount.queue.core.windows.net updates.jsonl

A message is one JSON object (schemas/message.schema.json, docs/producers.md):
  {{"profileType": "iosScepCertificateProfile", "deviceConfigurationId": "...",
   "managedDeviceCertificateStateId": "...", "update": {{"certificateKeyUsage": "digitalSignature"}}}}
Each command has its own --help (certstate send --help).

{TARGETS}

{EXIT_CODES}"""


def _version() -> str:
    try:
        return metadata.version("certstate")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every subcommand explains itself with --help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Validate, send, watch and replay certificate-state updates: the JSON messages the certstate\n"
            "function reads from its input queue and turns into Microsoft Graph PATCH requests."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for command in COMMANDS:
        command.register(commands, common)
    return parser
