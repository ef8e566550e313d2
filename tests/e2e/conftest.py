"""End-to-end fixtures: the whole local stack on the session's Azurite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from devstack.azurite import Azurite
from devstack.stack import LocalStack

FAST_SETTINGS = {  # host.json overrides (as app settings) and client limits that keep retries to seconds
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.200",
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
    "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "3",
    "GRAPH_MAX_ATTEMPTS": "3",
    "GRAPH_MAX_WAIT_SECONDS": "3",
}


@pytest.fixture
def make_stack(azurite: Azurite) -> Iterator[Callable[..., LocalStack]]:
    """Start a LocalStack (fresh queues, simulator and identity emulator) on the shared Azurite."""
    with ExitStack() as stacks:

        def make(**kwargs: Any) -> LocalStack:
            settings = {**FAST_SETTINGS, **kwargs.pop("settings", {})}
            stack = LocalStack(azurite=azurite, settings=settings, **kwargs)
            return stacks.enter_context(stack)

        yield make
