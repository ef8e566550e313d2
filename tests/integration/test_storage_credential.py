"""The storage clients' credential, against the managed-identity emulator: bounded like Graph's."""

from __future__ import annotations

import time
import uuid

import pytest
from azure.core.exceptions import AzureError

from devstack.identity_emulator import IdentityEmulator
from shared.storage import StorageConnection

STORAGE_SCOPE = "https://storage.azure.com/.default"


def connection() -> StorageConnection:
    # A client id of its own: the process shares one credential per identity, and this test's must be new.
    return StorageConnection(queue_service_uri="https://acct.queue.core.windows.net", client_id=str(uuid.uuid4()))


def test_the_storage_credential_gets_its_token_from_the_identity_endpoint(identity: IdentityEmulator):
    credential = connection().queue("q").credential
    assert credential.get_token(STORAGE_SCOPE).token
    assert identity.token_requests == 1


@pytest.mark.timeout(60)
def test_a_stalled_identity_endpoint_costs_the_storage_client_seconds_not_minutes(identity: IdentityEmulator):
    identity.set_latency(30)
    credential = connection().queue("q").credential
    started = time.monotonic()
    with pytest.raises(AzureError):
        credential.get_token(STORAGE_SCOPE)
    assert time.monotonic() - started < 9  # one 5 s read, no retry of it (azure-core's default: minutes)
