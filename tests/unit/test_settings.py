"""Settings: read once from the environment, with Graph's URL rules and the national-cloud scope."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import CredentialMode, Settings, load_settings


@pytest.mark.parametrize(
    ("base_url", "scope"),
    [
        ("https://graph.microsoft.com/beta", "https://graph.microsoft.com/.default"),
        ("https://graph.microsoft.us/beta/", "https://graph.microsoft.us/.default"),
        ("https://dod-graph.microsoft.us/beta", "https://dod-graph.microsoft.us/.default"),
        ("https://microsoftgraph.chinacloudapi.cn/beta", "https://microsoftgraph.chinacloudapi.cn/.default"),
        ("http://127.0.0.1:8080/beta", "http://127.0.0.1:8080/.default"),
        ("http://localhost:8080/beta", "http://localhost:8080/.default"),
        ("http://[::1]:8080/beta", "http://[::1]:8080/.default"),
    ],
)
def test_the_token_scope_follows_the_graph_origin(base_url: str, scope: str):
    settings = Settings(GRAPH_BASE_URL=base_url)
    assert settings.graph_scope == scope
    assert not settings.GRAPH_BASE_URL.endswith("/")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://graph.microsoft.com/beta",  # plain http off loopback would leak the token
        "http://10.0.0.5/beta",
        "ftp://graph.microsoft.com/beta",
        "https://graph.microsoft.com/beta?x=1",
        "https://user:pw@graph.microsoft.com/beta",
        "graph.microsoft.com/beta",
    ],
)
def test_unsafe_graph_urls_are_refused(base_url: str):
    with pytest.raises(ValidationError, match="GRAPH_BASE_URL"):
        Settings(GRAPH_BASE_URL=base_url)


def test_settings_come_from_the_environment_once(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CREDENTIAL_MODE", "default")
    monkeypatch.setenv("MANAGED_IDENTITY_CLIENT_ID", "")
    monkeypatch.setenv("GRAPH_WRITE_BUDGET", "12")
    load_settings.cache_clear()
    try:
        first = load_settings()
        assert (first.CREDENTIAL_MODE, first.MANAGED_IDENTITY_CLIENT_ID, first.GRAPH_WRITE_BUDGET) == (
            CredentialMode.DEFAULT, None, 12,
        )  # fmt: skip
        monkeypatch.setenv("GRAPH_WRITE_BUDGET", "99")
        assert load_settings() is first
    finally:
        load_settings.cache_clear()


@pytest.mark.parametrize("name", ["ab", "Upper-case", "double--hyphen", "-leading", "x" * 57])
def test_queue_names_must_leave_room_for_the_poison_queue(name: str):
    with pytest.raises(ValidationError, match="INPUT_QUEUE_NAME"):
        Settings(INPUT_QUEUE_NAME=name)
