"""Fixtures for the producer library and the `certstate` CLI: Azurite queues, a closed port, exact restores."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devstack.azurite import Azurite
from producer.cli import main
from tests.cli.harness import Queues, Run


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
def audit_table(table: TableClient) -> TableClient:
    """A fresh audit table on Azurite's table service (tests/conftest.py), deleted afterwards."""
    return table


@pytest.fixture(autouse=True)
def restores_are_exact(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every message the CLI puts back was received and kept: no restore of a deleted or already restored one."""
    original = QueueClient.update_message
    failures: list[Exception] = []

    def spy(self: QueueClient, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except Exception as err:
            failures.append(err)
            raise

    monkeypatch.setattr(QueueClient, "update_message", spy)
    yield
    assert failures == []


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
