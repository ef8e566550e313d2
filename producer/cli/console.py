"""Writing to the terminal: results on stdout, notes, summaries and progress on stderr.

Every line goes through `safe` (`out`, `err`): what the CLI prints comes from queues, the audit table and files
that anyone who may send a message wrote, and an ESC sequence or bidi override there must show,
not act on the operator's terminal (docs/producers.md, "Operator-safe output").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from shared.contract.echo import escaped


def safe(text: object) -> str:
    r"""`text` as the CLI prints it: control characters, bidi controls and lone surrogates as `\uXXXX`.

    The outcomes' own form (docs/outcomes.md, "Echoed values"). Inside JSON text it is JSON's escape of
    the same character, so a `--json` line stays the same JSON, only printable.
    """
    return escaped(str(text))


def out(text: str = "") -> None:
    """One line of the command's result (a line break in it is shown, never written: it could forge a row)."""
    sys.stdout.write(safe(text) + "\n")


def out_json(document: Any) -> None:  # noqa: ANN401 - any JSON value
    """One JSON line of the command's result (`--json`)."""
    out(json.dumps(document, ensure_ascii=False))


def err(text: str) -> None:
    """One line for the person: a note, a problem, a summary beside JSON output."""
    sys.stderr.write(safe(text) + "\n")


def plural(count: int, word: str) -> str:
    """`1 message`, `2 messages`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Progress:
    """A counter redrawn in place on stderr (`sent 120/500`, `scanned 320 messages`), at most ten times a second.

    Shown when stderr is a terminal, or when asked (`--progress`); never on stdout, which stays the result.
    """

    def __init__(self, enabled: bool, verb: str = "sent") -> None:
        self.enabled = enabled
        self.verb = verb
        self.sent = 0
        self._shown = False
        self._last = 0.0

    def __call__(self, done: int, total: int | None = None) -> None:
        """Record progress; redraw if it is time."""
        self.sent = done
        now = time.monotonic()
        if self.enabled and (done == total or now - self._last >= 0.1):
            text = f"{done}/{total}" if total is not None else plural(done, "message")
            sys.stderr.write(f"\r  {self.verb} {text}")
            sys.stderr.flush()
            self._shown, self._last = True, now

    def finish(self) -> None:
        """End the counter's line, if one was drawn."""
        if self._shown:
            sys.stderr.write("\n")
            self._shown = False


def progress(args: argparse.Namespace, verb: str) -> Progress:
    """The command's progress counter: on a terminal, or with --progress."""
    return Progress(enabled=bool(getattr(args, "progress", False)) or sys.stderr.isatty(), verb=verb)
