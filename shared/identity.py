"""How the function's managed identity is reached: bounded, so a failing endpoint costs seconds, not minutes."""

from __future__ import annotations

from typing import Any, Final

IDENTITY_TRANSPORT: Final[dict[str, Any]] = {
    "connection_timeout": 2,
    "read_timeout": 5,
    "retry_total": 1,
    "retry_read": 0,
}
"""One token call takes at most ~5 s, where azure-core's defaults (300 s per read, 10 retries) take minutes.

The endpoint is on the host (a refused connection fails at once; a black hole costs 2 x 2 s), and it
answers in well under a second when healthy; a read that times out is not retried, since the token
lock is held meanwhile (docs/design.md, "Identity endpoint").
"""

ENTRA_TRANSPORT: Final[dict[str, Any]] = {
    "connection_timeout": 5,
    "read_timeout": 10,
    "retry_total": 1,
    "retry_read": 0,
}
"""A customer tenant's token call (Entra ID, over the internet): at most ~20 s where the defaults take minutes.

Looser than the identity endpoint's (Entra is remote, its p99 is seconds), still well inside an
invocation's wait, and never a retry after a read timeout, for the same reason.
"""
