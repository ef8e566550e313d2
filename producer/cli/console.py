"""Writing to the terminal: result lines on stdout, notes and progress on stderr."""

from __future__ import annotations

import sys
import time


def out(text: str = "") -> None:
    """One line of the command's result."""
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    """One line for the person: a note, a problem, a summary beside JSON output."""
    sys.stderr.write(text + "\n")


def plural(count: int, word: str) -> str:
    """`1 message`, `2 messages`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Progress:
    """A `sent 120/500` counter redrawn in place on stderr, at most ten times a second, for a person watching."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.sent = 0
        self._shown = False
        self._last = 0.0

    def __call__(self, sent: int, total: int) -> None:
        """Record progress; redraw if it is time."""
        self.sent = sent
        now = time.monotonic()
        if self.enabled and (sent == total or now - self._last >= 0.1):
            sys.stderr.write(f"\r  sent {sent}/{total}")
            sys.stderr.flush()
            self._shown, self._last = True, now

    def finish(self) -> None:
        """End the counter's line, if one was drawn."""
        if self._shown:
            sys.stderr.write("\n")
            self._shown = False
