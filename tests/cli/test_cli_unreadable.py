"""A queue or audit table that cannot be read says so (exit 3), never a count it did not read (issue 17, 8b).

Against a loopback stand-in for the storage service that answers as each test tells it: Azurite cannot
be made to fail one request on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.storage.queue import QueueClient

from devstack.azurite import connection_string
from producer.cli.exits import EXIT_OK, EXIT_STORAGE
from tests.cli.harness import Queues, Run

Cli = Callable[..., Run]
Answer = tuple[int, dict[str, str], bytes]
EMPTY_PAGE: Answer = (200, {"Content-Type": "application/xml"}, b"<QueueMessagesList></QueueMessagesList>")
ERROR_XML = b'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>x</Message></Error>'


def failure(status: int, code: str) -> Answer:
    return status, {"Content-Type": "application/xml"}, ERROR_XML.replace(b"{code}", code.encode())


@dataclass
class StandIn:
    """What the service answers, by kind of request; every request it saw, in order."""

    properties: Answer = (200, {"x-ms-approximate-messages-count": "3"}, b"")
    receives: list[Answer] = field(default_factory=lambda: [failure(500, "InternalError")])
    peek: Answer = field(default_factory=lambda: failure(500, "InternalError"))
    table: Answer = field(default_factory=lambda: failure(500, "InternalError"))
    seen: list[str] = field(default_factory=list)
    port: int = 0

    def answer(self, path: str) -> Answer:
        if "comp=metadata" in path:
            self.seen.append("properties")
            return self.properties
        if "peekonly=true" in path:
            self.seen.append("peek")
            return self.peek
        if "/messages" in path:
            self.seen.append("receive")
            return self.receives.pop(0) if len(self.receives) > 1 else self.receives[0]
        self.seen.append("table")
        return self.table

    @property
    def args(self) -> list[str]:
        return ["--connection-string", connection_string(self.port, self.port), "--retries", "2"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/devstoreaccount1"


@pytest.fixture
def service() -> Iterator[StandIn]:
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = stand_in.answer(self.path)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    server.shutdown()
    server.server_close()


def says_it_could_not_read(run: Run, what: str, service: StandIn) -> None:
    assert run.code == EXIT_STORAGE
    assert run.out == ""  # no table, no count
    assert run.err.endswith(f"{what} at {service.endpoint}: the service answered 500 InternalError\n"), run.err
    assert "0 messages" not in run.err


@pytest.mark.parametrize(
    ("argv", "queue"),
    [
        (["poison", "list"], "queue 'certificate-state-updates-poison'"),
        (["results"], "queue 'certificate-state-results'"),
        (["replay"], "queue 'certificate-state-results'"),
    ],
)
def test_a_failed_receive_is_an_error_not_an_empty_queue(cli: Cli, service: StandIn, argv: list[str], queue: str):
    # The receive failed after reaching the service, which may have hidden the page it was returning:
    # asked again, the queue would look empty. So it is not asked again.
    service.receives = [failure(500, "InternalError"), EMPTY_PAGE]
    run = cli(*argv, *service.args)
    says_it_could_not_read(run, queue, service)
    assert service.seen.count("receive") == 1


def test_a_failed_peek_is_an_error_not_an_empty_queue(cli: Cli, service: StandIn):
    service.receives = [failure(403, "AuthorizationPermissionMismatch")]  # an identity that may only peek
    run = cli("poison", "list", *service.args)
    says_it_could_not_read(run, "queue 'certificate-state-updates-poison'", service)
    assert service.seen[-1] == "peek"


def test_stats_by_tenant_prints_no_table_when_a_peek_fails(cli: Cli, service: StandIn):
    run = cli("stats", "--by-tenant", *service.args)
    says_it_could_not_read(run, "queue 'certificate-state-updates'", service)


def test_history_says_the_audit_table_could_not_be_read(cli: Cli, service: StandIn):
    run = cli("history", "--correlation-id", "order-4711", *service.args)
    says_it_could_not_read(run, "audit table 'certstateaudit'", service)


def test_poison_list_says_when_the_queue_reports_more_than_it_could_read(cli: Cli, service: StandIn):
    service.receives = [EMPTY_PAGE]  # three messages, all hidden by someone else's receive
    run = cli("poison", "list", *service.args)
    assert (run.code, run.out) == (EXIT_OK, "")
    assert run.err.splitlines() == [
        "0 messages on 'certificate-state-updates-poison'",
        "note: 'certificate-state-updates-poison' reports about 3 messages; the others are hidden for now "
        "(received by someone else, or by a read that failed after reaching the service): list again later",
    ]


def test_a_poison_queue_azurite_cannot_return_is_an_error_not_an_empty_one(cli: Cli, queues: Queues):
    # Azurite stores a message with a raw control character (Azure refuses it) and then answers 500 to every
    # read that would return it: the red team's "0 messages" for a poison queue holding 3.
    poison = QueueClient.from_connection_string(queues.connection_string, f"{queues.input.queue_name}-poison")
    poison.create_queue()
    try:
        for n in range(3):
            poison.send_message(f"\x1b[2J{n}")
        run = cli("poison", "list", *queues.input_args)
        assert run.code == EXIT_STORAGE
        assert run.out == ""
        assert run.err.endswith(": the service answered 500\n"), run.err
        assert "0 messages" not in run.err
    finally:
        poison.delete_queue()
        poison.close()
