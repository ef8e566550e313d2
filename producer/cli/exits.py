"""Exit codes and the two failures the CLI raises itself; scripts branch on the codes, people read the line."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
EXIT_STORAGE: Final = 3
EXIT_INTERRUPTED: Final = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    done (for validate: every message valid)
  {EXIT_INVALID}    invalid input: a message breaks the contract, or FILE is not UTF-8 / JSON;
       send refuses the whole file and sends nothing
  {EXIT_USAGE}    usage error: unknown option, FILE cannot be opened, malformed connection string,
       bad queue name or account URL
  {EXIT_STORAGE}    the queue service is unreachable, refused the credentials, or the queue is missing
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""


class UsageError(Exception):
    """The command line or a file name is wrong (exit 2)."""


class InputError(Exception):
    """A file's content cannot be read as messages at all (exit 1)."""
