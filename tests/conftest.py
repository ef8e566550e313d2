"""Shared fixtures. Azurite starts only for tests that ask for it, once per session."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.data.tables import TableClient, TableServiceClient

from devstack.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running Azurite queue service (from `npm ci`) on a free loopback port, stopped after the session."""
    with Azurite() as service:
        yield service


@pytest.fixture
def queue_names() -> Callable[[str], str]:
    """Return a factory of queue names unique to this test, so tests sharing Azurite never collide.

    ``queue_names("in")`` gives e.g. ``t3f9a1c2b-1-in``; names stay short enough for a ``-poison`` twin.
    """
    run = uuid.uuid4().hex[:8]
    counter = itertools.count(1)

    def make(label: str = "q") -> str:
        name = f"t{run}-{next(counter)}-{label}".lower()
        assert len(name) <= 56, f"queue label too long for a poison twin: {label!r}"
        return name

    return make


@pytest.fixture
def table(azurite: Azurite) -> Iterator[TableClient]:
    """A fresh table on Azurite's table service (the audit trail's shape), deleted afterwards."""
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        name = "t" + uuid.uuid4().hex[:12]
        yield service.create_table(name)
        service.delete_table(name)
