"""Run one command: parse, fill in the queue names, map every expected failure to one line and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from producer.cli import target
from producer.cli.console import err
from producer.cli.exits import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_STORAGE, EXIT_USAGE, InputError, UsageError
from producer.cli.parser import PROG, build_parser
from producer.sender import QueueNotFound, StorageError, TargetError, default_input_queue, default_result_queue


@contextlib.contextmanager
def _azure_logging(verbose: bool) -> Iterator[None]:
    """The SDK logs retries and credential attempts; a CLI shows them only when asked (-v)."""
    logger = logging.getLogger("azure")
    previous = logger.level
    handler: logging.Handler | None = None
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if handler is not None:
            logger.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see EXIT_CODES)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or argparse's own usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if getattr(args, "input_queue", "") is None:
        args.input_queue = default_input_queue()
    if getattr(args, "result_queue", "") is None:
        args.result_queue = default_result_queue()
    try:
        with _azure_logging(getattr(args, "verbose", False)):
            return int(args.run(args))
    except KeyboardInterrupt:
        err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except (UsageError, TargetError, InputError, StorageError) as error:
        return _failure(error, args)
    except BrokenPipeError:  # `certstate results --follow | head`: the reader has what it wanted
        with contextlib.suppress(OSError, ValueError):  # keep Python's exit-time flush quiet too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _failure(error: Exception, args: argparse.Namespace) -> int:
    """One line on stderr for an expected failure, and its exit code."""
    text = str(error)
    code = EXIT_USAGE
    if isinstance(error, InputError):
        code = EXIT_INVALID
    elif isinstance(error, StorageError):
        code, text = EXIT_STORAGE, error.message
        if isinstance(error, QueueNotFound) and args.command == "send":
            text += " (certstate send --create-queue creates it)"
        elif not isinstance(error, QueueNotFound):
            text += target.unreachable_hint(args)
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    err(f"{PROG} {command}: error: {text}")
    return code
