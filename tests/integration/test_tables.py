"""shared/tables.py against Azurite: one row read and written on a condition, and its kept-alive connections.

What the audit trail's transactions write is tests/integration/test_audit.py's; here, what a store of one row
per key (a schedule, a record) needs: an insert that refuses an existing row, a replace that refuses a row
changed since its ETag, a read that says "no row"; and a connection the service dropped while idle never
costs a write.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient

from shared.tables import Entity, SharedKey, TableError, TableRows, entity
from tests.support.audit import lean_rows


@pytest.fixture
def rows(table: TableClient) -> Iterator[TableRows]:
    lean = lean_rows(table)
    yield lean
    lean.close()


def test_an_insert_refuses_a_row_that_exists_and_a_replace_one_changed_since_its_etag(rows, table):
    first = rows.insert(entity({"PartitionKey": "home", "RowKey": "budget", "nextSlot": 1.5, "lastBy": "a"}))
    with pytest.raises(TableError) as exists:
        rows.insert(entity({"PartitionKey": "home", "RowKey": "budget", "nextSlot": 9.0}))
    assert exists.value.status == 409
    found = rows.get("home", "budget")
    assert found == ({"PartitionKey": "home", "RowKey": "budget", "nextSlot": 1.5, "lastBy": "a",
                      "Timestamp": found[0]["Timestamp"]}, first)  # fmt: skip
    second = rows.replace(entity({"PartitionKey": "home", "RowKey": "budget", "nextSlot": 2.5, "lastBy": "b"}), first)
    assert second != first
    with pytest.raises(TableError) as changed:
        rows.replace(entity({"PartitionKey": "home", "RowKey": "budget", "nextSlot": 3.5}), first)
    assert changed.value.status == 412
    stored = table.get_entity("home", "budget")  # the SDK reads what the lean client wrote
    assert (stored["nextSlot"], stored["lastBy"], stored.metadata["etag"]) == (2.5, "b", second)


def test_a_missing_row_or_table_reads_as_none_and_an_insert_without_the_table_is_a_404(rows, azurite):
    assert rows.get("home", "budget") is None
    missing = TableRows.from_connection_string(azurite.connection_string, "nosuchtable" + uuid.uuid4().hex[:8])
    assert missing.get("home", "budget") is None
    with pytest.raises(TableError) as gone:
        missing.insert(Entity("home", "budget", "{}"))
    assert gone.value.status == 404
    missing.close()


class ClosingServer:
    """Answers each connection's first request with a keep-alive 204, then closes it: an idle connection dropped."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}/acct"
        self.connections = 0
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
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(b'HTTP/1.1 204 No Content\r\nETag: W/"1"\r\nConnection: keep-alive\r\n\r\n')

    def close(self) -> None:
        self._listener.close()


def test_a_connection_the_service_dropped_while_idle_is_not_used_for_the_next_request():
    server = ClosingServer()
    rows = TableRows(server.endpoint, "t", SharedKey("acct", b"key"))  # the stub checks no signature
    try:
        assert rows.replace(Entity("p", "r", "{}"), "*") == 'W/"1"'
        threading.Event().wait(0.2)  # the server has closed the kept connection by now
        assert rows.replace(Entity("p", "r", "{}"), "*") == 'W/"1"'  # not retried: sent once, on a fresh connection
        assert server.connections == 2
    finally:
        rows.close()
        server.close()
