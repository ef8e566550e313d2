"""The whole command line: the top-level help, and one sub-parser per command module."""

from __future__ import annotations

import argparse
import textwrap
from importlib import metadata
from typing import Final

from producer.cli import health, history, poison, replay, results, schema, send, stats, tenants, validate
from producer.cli.exits import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_STORAGE, EXIT_USAGE, exit_codes
from producer.cli.options import FORMATTER, TARGETS, common_options

PROG: Final = "certstate"
COMMANDS: Final = (validate, send, results, replay, poison, stats, history, health, tenants, schema)
"""Each module has `register(commands, common)` (its options and help) and `run(args) -> exit code`."""

EPILOG = f"""\
examples:
  certstate validate examples/seed-routes/*.json      check messages offline, line and field of each error
  certstate send --create-queue examples/dry-run.json  enqueue to local Azurite, creating the queue
  certstate send updates.jsonl                         one message per line (JSON Lines), all or nothing
  certstate results --correlation-id order-4711        find an outcome anywhere on the result queue
  certstate results --follow                           watch outcomes arrive (Ctrl-C stops)
  certstate replay --error-code graphThrottled --remove
  certstate poison list                                what the host gave up on; poison retry sends it back
  certstate stats                                      queue depths: input, results, poison
  certstate history --correlation-id order-4711 --since 30d   what happened to it (the audit trail)
  certstate health                                     a dryRun through the deployment, exit code 0 if well
  certstate tenants add <GUID> --name Contoso --paused  register a customer tenant; tenants check: its consent
  certstate schema message > message.schema.json
  certstate send --account-url https://myaccount.queue.core.windows.net updates.jsonl

A message is one JSON object (schemas/message.schema.json, docs/producers.md):
  {{"profileType": "iosScepCertificateProfile", "deviceConfigurationId": "...",
   "managedDeviceCertificateStateId": "...", "update": {{"certificateKeyUsage": "digitalSignature"}}}}

where the queues are:
{textwrap.indent(TARGETS, "  ")}

{
    exit_codes(
        (EXIT_OK, "done"),
        (EXIT_INVALID, "invalid input, or something asked for could not be done (the command's help says which)"),
        (EXIT_USAGE, "usage error"),
        (EXIT_STORAGE, "the queue service is unreachable, refused the credentials, or a queue is missing"),
        (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    )
}
Every command has --json and its own --help with examples and its exit codes (certstate send --help)."""


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
        formatter_class=FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for command in COMMANDS:
        command.register(commands, common)
    return parser
