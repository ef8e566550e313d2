"""The composition root: the environment is read once per session, the credential follows the settings."""

from __future__ import annotations

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.settings import Settings
from shared.storage import StorageConnection
from shared.wiring import build_audit, build_credential, build_session

GRAPH = "https://graph.microsoft.com/beta"


def test_a_proxy_from_the_environment_is_kept_and_then_never_reread(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = build_session(4, GRAPH)
    assert session.proxies.get("https") == "http://proxy.example:3128"
    assert session.trust_env is False  # requests would otherwise re-read env and ~/.netrc per request


def test_no_proxy_for_graph_is_honoured(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "graph.microsoft.com")
    assert "https" not in build_session(4, GRAPH).proxies


def test_a_ca_bundle_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    assert build_session(4, GRAPH).verify == "/etc/ssl/corp.pem"


@pytest.mark.parametrize(
    ("mode", "kind"), [("managedIdentity", ManagedIdentityCredential), ("default", DefaultAzureCredential)]
)
def test_the_credential_follows_the_mode(mode: str, kind: type, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "x")
    assert isinstance(build_credential(Settings(CREDENTIAL_MODE=mode, MANAGED_IDENTITY_CLIENT_ID="")), kind)


KEY = "AccountName=a;AccountKey=a2V5;"
QUEUES = "QueueEndpoint=http://127.0.0.1:1/a;"
TABLES = "TableEndpoint=http://127.0.0.1:2/a;"
URIS = {
    "queue_service_uri": "https://a.queue.core.windows.net",
    "table_service_uri": "https://a.table.core.windows.net",
}


@pytest.mark.parametrize(
    ("storage", "tables"),
    [
        (StorageConnection("UseDevelopmentStorage=true"), True),
        (StorageConnection("DefaultEndpointsProtocol=https;" + KEY + "EndpointSuffix=core.windows.net"), True),
        (StorageConnection(KEY + QUEUES + TABLES), True),
        (StorageConnection(KEY + QUEUES), False),
        (StorageConnection(queue_service_uri=URIS["queue_service_uri"]), False),
        (StorageConnection(**URIS), True),
    ],
)
def test_the_audit_trail_is_kept_only_where_a_table_service_is_named(storage: StorageConnection, tables: bool):
    """A queue-only connection string must not make the SDK guess a table host in Azure (from a laptop)."""
    assert storage.has_tables is tables


def test_without_a_table_service_there_is_no_audit_trail_and_no_request():
    settings = Settings(AzureWebJobsStorage=KEY + QUEUES)
    assert settings.storage.configured
    assert build_audit(settings) is None
