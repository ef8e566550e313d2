"""Settings: read once from the environment, with Graph's URL rules and the national-cloud scope."""

from __future__ import annotations

import math

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


A, B = "1111BBBB-0000-4000-8000-000000000002", "2222cccc-0000-4000-8000-000000000003"
APP = "3333dddd-0000-4000-8000-000000000004"


def test_served_tenants_are_a_comma_separated_list_of_guids(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SERVED_TENANT_IDS", f" {A}, {B} ,")
    monkeypatch.setenv("MULTITENANT_APP_CLIENT_ID", APP)
    monkeypatch.setenv("HOME_TENANT_ID", "")
    settings = Settings()
    served, home = settings.SERVED_TENANT_IDS, settings.HOME_TENANT_ID
    assert served == (A.lower(), B)
    assert home is None


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SERVED_TENANT_IDS": A}, "MULTITENANT_APP_CLIENT_ID is required"),
        ({"SERVED_TENANT_IDS": f"{A};{B}", "MULTITENANT_APP_CLIENT_ID": APP}, "GUID"),
        ({"SERVED_TENANT_IDS": "contoso.onmicrosoft.com", "MULTITENANT_APP_CLIENT_ID": APP}, "GUID"),
        ({"SERVED_TENANT_IDS": f"{A},{A.lower()}", "MULTITENANT_APP_CLIENT_ID": APP}, "twice"),
        ({"SERVED_TENANT_IDS": A, "MULTITENANT_APP_CLIENT_ID": APP, "HOME_TENANT_ID": A}, "HOME_TENANT_ID"),
        ({"HOME_TENANT_ID": "common"}, "GUID"),
        ({"MULTITENANT_APP_CLIENT_ID": f"{APP}x"}, "GUID"),
        ({"GRAPH_TENANT_WRITE_BUDGETS": f"{A}=10"}, "not served"),
        ({"GRAPH_TENANT_WRITE_BUDGETS": "home"}, "<tenant GUID or home>="),
        ({"GRAPH_TENANT_WRITE_BUDGETS": "home=0"}, "greater than or equal to 1"),
        ({"GRAPH_TENANT_WRITE_BUDGETS": "home=5,HOME=6"}, "twice"),
        ({"AZURE_AUTHORITY_HOST": "http://127.0.0.1:8443"}, "https"),
        ({"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/tenant"}, "https origin"),
    ],
)
def test_a_tenant_set_the_function_could_not_serve_is_refused_at_start(
    env: dict[str, str], problem: str, monkeypatch: pytest.MonkeyPatch
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=problem):
        Settings()


def test_write_budgets_follow_the_rule_unless_a_tenant_overrides_it(monkeypatch: pytest.MonkeyPatch):
    home = "0000aaaa-0000-4000-8000-000000000001"
    monkeypatch.setenv("SERVED_TENANT_IDS", f"{A},{B}")
    monkeypatch.setenv("MULTITENANT_APP_CLIENT_ID", APP)
    monkeypatch.setenv("HOME_TENANT_ID", home)
    monkeypatch.setenv("GRAPH_WRITE_BUDGET", "49")
    monkeypatch.setenv("GRAPH_TENANT_WRITE_BUDGETS", f"{A}=24, {home.upper()}=12")
    settings = Settings()
    assert [settings.write_budget(t) for t in (None, home, A.lower(), B)] == [12, 12, 24, 49]


@pytest.mark.parametrize(
    ("authority", "expected"),
    [(None, None), ("login.microsoftonline.us", "https://login.microsoftonline.us"),
     ("https://127.0.0.1:8443/", "https://127.0.0.1:8443")],
)  # fmt: skip
def test_the_authority_host_is_an_https_origin(authority: str | None, expected: str | None):
    host = Settings(AZURE_AUTHORITY_HOST=authority).AZURE_AUTHORITY_HOST
    assert host == expected


@pytest.mark.parametrize(
    ("budget", "instances", "split"),
    [(99, 1, 99), (99, 2, 49), (99, 4, 24), (9, 4, 1.5), (49, 8, 5.25), (1, 8, 0), (99, 100, 0)],
)
def test_the_split_without_the_pacing_table_never_lets_the_instances_pass_the_limit(
    budget: int, instances: int, split: float
):
    """GRAPH_WRITE_BUDGET is the deployment's; an instance that cannot coordinate paces at its share of it."""
    settings = Settings(GRAPH_WRITE_BUDGET=budget, GRAPH_PACING_MAX_INSTANCES=instances)
    assert settings.split_of(settings.write_budget(None)) == pytest.approx(split)
    if split > 0:  # an evenly spaced pacer lands at most floor(split) + 1 writes in a window; none at 0
        assert instances * (math.floor(split) + 1) <= budget + 1  # the limit less the reserve
    assert Settings().GRAPH_PACING_TABLE_NAME == "certstatepacing"
