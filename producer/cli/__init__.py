"""`certstate`: check, send, watch and replay certificate-state updates from a terminal or a script.

Every command that touches a queue goes through `producer.sender`, so the CLI validates exactly as
the function does and sends exactly what a Python producer would. Expected failures (a bad file, an
unreachable account, a missing queue) end in one line on stderr and a documented exit code, never a
traceback: scripts branch on the code, people read the line.
"""

from producer.cli.program import main

__all__ = ["main"]
