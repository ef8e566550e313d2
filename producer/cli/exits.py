"""Exit codes and the two failures the CLI raises itself; scripts branch on the codes, people read the line.

Each command lists in its --help only the codes it can end with, in the words that fit it.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
EXIT_STORAGE: Final = 3
EXIT_INTERRUPTED: Final = 130

USAGE: Final = (EXIT_USAGE, "usage error: unknown option, bad connection string, queue name or account URL")
STORAGE: Final = (
    EXIT_STORAGE,
    "the queue service is unreachable, refused the credentials, answered an error (nothing is counted), "
    "or a queue is missing",
)
INTERRUPTED: Final = (EXIT_INTERRUPTED, "interrupted (Ctrl-C)")


def exit_codes(*codes: tuple[int, str]) -> str:
    """The `exit codes:` block of one command's help."""
    return "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in codes)


class UsageError(Exception):
    """The command line or a file name is wrong (exit 2)."""


class InputError(Exception):
    """A file's content cannot be read as messages at all (exit 1)."""
