"""shared/tables.py's kept-alive connections: one the service dropped while idle never costs a write.

What Azurite makes of its transactions is tests/integration/test_audit.py's.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from shared.tables import Entity, SharedKey, TableError, TableRows

_BATCH_ANSWER = (
    b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n"
    b"--changesetresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    b"--changesetresponse_1--\r\n--batchresponse_1--\r\n"
)


def read_request(conn: socket.socket) -> bytes | None:
    """The body of the next request on `conn`, read whole; None when the client closed it."""
    request = b""
    while b"\r\n\r\n" not in request:
        if not (data := conn.recv(65536)):
            return None
        request += data
    head, _, body = request.partition(b"\r\n\r\n")
    length = next(int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))
    while len(body) < length:
        body += conn.recv(65536)
    return body


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
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            if read_request(conn) is not None:
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


class SlowServer(ClosingServer):
    """Answers every transaction, kept alive, `delay` seconds after it came in whole, with `status`."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.status = b"202 Accepted"
        self.bodies: list[bytes] = []
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            while (body := read_request(conn)) is not None:
                self.bodies.append(body)
                time.sleep(self.delay)
                try:
                    conn.sendall(
                        b"HTTP/1.1 " + self.status + b"\r\nContent-Length: " + str(len(_BATCH_ANSWER)).encode()
                        + b"\r\n\r\n" + _BATCH_ANSWER
                    )  # fmt: skip
                except OSError:
                    return  # the client gave up on the answer


def test_a_deadline_bounds_the_whole_exchange_below_the_per_read_bound():
    server = SlowServer(delay=3.0)
    rows = TableRows(server.endpoint, "t", SharedKey("acct", b"key"))
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            rows.upsert([Entity("p", "r", "{}")], time.monotonic() + 0.3)
        assert 0.25 <= time.monotonic() - started < 1.5  # the read bound alone is 5 s
        assert len(server.bodies) == 1  # a read timeout is never sent again
        server.delay = 0.0
        rows.upsert([Entity("p", "r", "{}")])  # a connection a deadline cut short is never used again
        assert server.connections == 2
    finally:
        rows.close()
        server.close()


def test_each_failed_request_is_reported_with_its_reason_and_an_answer_is_not():
    """What the process's pacers learn of a table outage their own calls did not meet (docs/design.md)."""
    server = SlowServer(delay=0.0)
    failures: list[str] = []
    rows = TableRows(server.endpoint, "t", SharedKey("acct", b"key"), retry=False, on_failure=failures.append)
    try:
        rows.upsert([Entity("p", "r", "{}")])
        assert failures == []
        server.delay = 0.3
        with pytest.raises(TimeoutError):  # not answered in time
            rows.upsert([Entity("p", "r", "{}")], time.monotonic() + 0.1)
        server.delay, server.status = 0.0, b"503 Service Unavailable"
        with pytest.raises(TableError):
            rows.upsert([Entity("p", "r", "{}")])
    finally:
        rows.close()
        server.close()
    gone = TableRows("http://127.0.0.1:2/acct", "t", SharedKey("acct", b"key"), on_failure=failures.append)
    with pytest.raises(ConnectionError):  # refused: nothing listens there
        gone.get("p", "r")
    assert failures == ["TimeoutError", "status 503", "ConnectionRefusedError"]
