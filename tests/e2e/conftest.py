"""End-to-end fixtures: the whole local stack on the session's Azurite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from devstack.azurite import Azurite
from devstack.stack import LocalStack
from tests.e2e.flows import FAST_SETTINGS


@pytest.fixture
def make_stack(azurite: Azurite) -> Iterator[Callable[..., LocalStack]]:
    """Start a LocalStack (fresh queues, simulator and identity emulator) on the shared Azurite."""
    with ExitStack() as stacks:

        def make(**kwargs: Any) -> LocalStack:
            settings = {**FAST_SETTINGS, **kwargs.pop("settings", {})}
            stack = LocalStack(azurite=azurite, settings=settings, **kwargs)
            return stacks.enter_context(stack)

        yield make
