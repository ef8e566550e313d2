"""The storage clients and their credential, and a customer tenant's credential: every call bounded in time."""

from __future__ import annotations

import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import AzureError

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from devstack.identity_emulator import IdentityEmulator
from shared.settings import Settings
from shared.storage import StorageConnection
from shared.wiring import build_tenants
from tests.support.silent import SilentServer

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


@pytest.mark.timeout(60)
def test_a_stalled_queue_service_costs_a_send_one_bounded_try_never_a_second_write():
    """A read that timed out may have landed: the client never sends it again (a deferred copy, twice)."""
    with SilentServer() as queue_service:
        account = f"AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};QueueEndpoint={queue_service.endpoint};"
        queue = StorageConnection(account).queue("q")
        started = time.monotonic()
        with pytest.raises(AzureError):
            queue.send_message("x")
        assert time.monotonic() - started < 9  # one 5 s read (the SDK's defaults: 300 s, then retries)
        assert queue_service.connections == 1


@pytest.mark.timeout(60)
def test_a_customer_tenants_silent_entra_endpoint_costs_seconds_not_minutes():
    with SilentServer() as entra:
        settings = Settings(
            SERVED_TENANT_IDS=CUSTOMER,
            MULTITENANT_APP_CLIENT_ID=str(uuid.uuid4()),
            AZURE_AUTHORITY_HOST=f"https://127.0.0.1:{entra.port}",
        )
        credential = build_tenants(settings, StaticToken()).tenant(CUSTOMER).credential
        started = time.monotonic()
        with pytest.raises(AzureError):
            credential.get_token("https://graph.microsoft.com/.default")
        assert time.monotonic() - started < 25  # bounded tries (azure-core's defaults: 300 s per read, retried)
        assert entra.connections <= 2


CUSTOMER = "6a3b2c1d-0000-4000-8000-00000000c0de"


class StaticToken:
    """The managed identity's exchange token, as the emulator would give it."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("assertion", int(time.time()) + 3600)
