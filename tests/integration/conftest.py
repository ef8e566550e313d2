"""Graph simulator and managed-identity emulator fixtures, with the real ManagedIdentityCredential."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from azure.identity import ManagedIdentityCredential

from devstack.graph_simulator import GraphSimulator
from devstack.identity_emulator import IdentityEmulator


@pytest.fixture
def signing_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def identity(signing_key: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEmulator]:
    """The App Service managed-identity endpoint, exported the way the Functions host exports it."""
    with IdentityEmulator(signing_key=signing_key) as emulator:
        for name, value in emulator.env().items():
            monkeypatch.setenv(name, value)
        yield emulator


@pytest.fixture
def graph(signing_key: bytes) -> Iterator[GraphSimulator]:
    with GraphSimulator(signing_key) as simulator:
        yield simulator


@pytest.fixture
def credential(identity: IdentityEmulator) -> ManagedIdentityCredential:
    """The production credential class, talking to the emulator through IDENTITY_ENDPOINT/IDENTITY_HEADER."""
    return ManagedIdentityCredential()
