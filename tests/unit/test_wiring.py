"""The composition root: the environment is read once per session, the credential follows the settings."""

from __future__ import annotations

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.settings import Settings
from shared.wiring import build_credential, build_session

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
