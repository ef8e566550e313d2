"""A loopback TCP endpoint that accepts connections and never answers: a stalled storage service."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self


class SilentServer:
    """Listens on a free loopback port, accepts every connection, reads what comes, and says nothing."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def endpoint(self) -> str:
        """An http base URL on this server, in the form Azurite's account endpoints take."""
        return f"http://127.0.0.1:{self.port}/devstoreaccount1"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._held.append(connection)  # kept open, never answered

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._held:
            connection.close()
        self._listener.close()
