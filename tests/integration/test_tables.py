"""shared/tables.py's kept-alive connections: one the service dropped while idle never costs a write.

What Azurite makes of its transactions is tests/integration/test_audit.py's.
"""

from __future__ import annotations

import socket
import threading

from shared.tables import Entity, SharedKey, TableRows

_BATCH_ANSWER = (
    b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n"
    b"--changesetresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    b"--changesetresponse_1--\r\n--batchresponse_1--\r\n"
)


class ClosingServer:
    """Answers each connection's first transaction with a keep-alive 202, then closes it: an idle connection dropped."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}/acct"
        self.connections = 0
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = next(
                    int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                conn.sendall(
                    b"HTTP/1.1 202 Accepted\r\nConnection: keep-alive\r\n"
                    b"Content-Length: " + str(len(_BATCH_ANSWER)).encode() + b"\r\n\r\n" + _BATCH_ANSWER
                )

    def close(self) -> None:
        self._listener.close()


def test_a_connection_the_service_dropped_while_idle_is_not_used_for_the_next_write():
    server = ClosingServer()
    rows = TableRows(server.endpoint, "t", SharedKey("acct", b"key"))  # the stub checks no signature
    try:
        rows.upsert([Entity("p", "r", "{}")])
        threading.Event().wait(0.2)  # the server has closed the kept connection by now
        rows.upsert([Entity("p", "r", "{}")])
        assert (server.connections, server.requests) == (2, 2)  # a fresh connection, nothing sent twice
    finally:
        rows.close()
        server.close()
