"""The function's own storage clients: one bounded credential for queues and tables alike."""

from __future__ import annotations

from shared.storage import StorageConnection

IDENTITY_BASED = StorageConnection(
    queue_service_uri="https://acct.queue.core.windows.net",
    table_service_uri="https://acct.table.core.windows.net",
    client_id="11111111-2222-3333-4444-555555555555",
)


def test_queue_and_table_clients_share_one_credential_so_a_deferral_reuses_the_audit_trails_token():
    queue = IDENTITY_BASED.queue("certificate-state-updates")
    tables = IDENTITY_BASED.table_service()
    assert queue.credential is tables.credential
    assert IDENTITY_BASED.queue("other").credential is queue.credential
