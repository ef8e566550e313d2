"""Fixtures for the producer library and the `certstate` CLI: Azurite queues, a closed port, hand-made outcomes."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from azure.storage.queue import QueueClient

from devstack.azurite import Azurite
from producer.cli import main


@dataclass
class Run:
    """What one in-process `certstate` call did."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run `certstate ARGS...` in-process; asserts no traceback ever reaches the user."""

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out
        return Run(code, captured.out, captured.err)

    return run


@dataclass
class Queues:
    """A fresh input/result queue pair on the session's Azurite, and the options that target them."""

    connection_string: str
    input: QueueClient
    result: QueueClient

    @property
    def args(self) -> list[str]:
        return [
            "--connection-string",
            self.connection_string,
            "--input-queue",
            self.input.queue_name,
            "--result-queue",
            self.result.queue_name,
        ]

    @property
    def input_args(self) -> list[str]:
        return ["--connection-string", self.connection_string, "--input-queue", self.input.queue_name]

    @property
    def result_args(self) -> list[str]:
        return ["--connection-string", self.connection_string, "--result-queue", self.result.queue_name]

    def contents(self, queue: QueueClient) -> list[str]:
        """Every visible message's text, oldest first (peek leaves them in place)."""
        return [str(m.content) for m in queue.peek_messages(max_messages=32)]


@pytest.fixture
def queues(azurite: Azurite, queue_names: Callable[[str], str]) -> Iterator[Queues]:
    """Created input and result queues, deleted afterwards."""
    cs = azurite.connection_string
    pair = Queues(
        cs,
        QueueClient.from_connection_string(cs, queue_names("in")),
        QueueClient.from_connection_string(cs, queue_names("out")),
    )
    pair.input.create_queue()
    pair.result.create_queue()
    yield pair
    for queue in (pair.input, pair.result):
        queue.delete_queue()
        queue.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
