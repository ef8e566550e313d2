"""The local services the benchmarks run against, on 127.0.0.1.

The Graph simulator is subclassed (never edited) to count the TCP connections its clients open:
aiohttp gives every request the transport of its connection, so distinct transports are distinct
connections. Its clients write concurrently, so it applies the stack's in-flight grace by default.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from devstack.graph_simulator import CONCURRENT_CLIENT_GRACE_S, GraphSimulator

UNLIMITED_WRITES = 1_000_000_000
"""A write limit no benchmark reaches: `no write limit` for the cost measurements."""


class CountingGraphSimulator(GraphSimulator):
    """The Graph simulator, counting the TCP connections that carried Graph requests."""

    def __init__(self, signing_key: bytes, **kwargs: Any) -> None:  # noqa: ANN401 - GraphSimulator's knobs
        self._conn_lock = threading.Lock()
        self._transports: dict[int, tuple[object, object]] = {}  # id -> (transport, peername); refs keep ids unique
        super().__init__(signing_key, **{"in_flight_grace_s": CONCURRENT_CLIENT_GRACE_S, **kwargs})

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            with self._conn_lock:
                if id(transport) not in self._transports:
                    self._transports[id(transport)] = (transport, transport.get_extra_info("peername"))
        return await super()._graph(request)

    @property
    def connections(self) -> int:
        """Distinct client connections seen since the last `reset_connections`."""
        with self._conn_lock:
            return len(self._transports)

    def reset_connections(self) -> None:
        """Forget the connections seen so far."""
        with self._conn_lock:
            self._transports.clear()


def queue_names() -> Iterator[tuple[str, str]]:
    """Unique (input, result) queue names, short enough for a `-poison` twin."""
    while True:
        run = uuid.uuid4().hex[:10]
        yield f"bench{run}-in", f"bench{run}-out"
