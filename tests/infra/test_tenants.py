"""The multi-tenant deployment: a secretless app registration that trusts the function identity, and its settings."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from shared.graph.tenancy import authority_for, exchange_scope
from shared.host_config import queue_options
from shared.settings import Settings
from tests.infra.bicep import REPO, body, condition, parse, render, text, walk

MAIN = "main.bicep"
FUNCTION = "modules/functionapp.bicep"
APP = "modules/multitenant-app.bicep"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _app_settings() -> dict[str, Any]:
    site = body(parse(FUNCTION)["resources"]["site"])
    return {entry["name"]: entry["value"] for entry in site["properties"]["siteConfig"]["appSettings"]}


def test_the_app_is_multi_tenant_and_requests_the_one_graph_app_role() -> None:
    template = parse(APP)
    assert "microsoftGraphV1" in template["extensions"]
    app = template["resources"]["app"]
    assert (app["type"], app["api_version"]) == ("Microsoft.Graph/applications", "v1.0")
    registration = body(app)
    assert registration["signInAudience"] == "AzureADMultipleOrgs"
    (access,) = registration["requiredResourceAccess"]
    assert access["resourceAppId"] == GRAPH_APP_ID
    (role,) = access["resourceAccess"]
    assert role["type"] == "Role"  # an application permission, granted by each customer's admin
    assert "id: filter(graphServicePrincipal.appRoles, role => role.value == appRoleValue)[0].id" in text(APP)
    assert parse(APP)["parameters"]["appRoleValue"]["default"] == "DeviceManagementConfiguration.ReadWrite.All"
    assert body(template["resources"]["graphServicePrincipal"])["appId"] == GRAPH_APP_ID


def test_the_apps_only_credential_is_a_federated_one_trusting_the_function_identity() -> None:
    template = parse(APP)
    credential = template["resources"]["functionIdentityCredential"]
    assert (credential["type"], credential["api_version"]) == (
        "Microsoft.Graph/applications/federatedIdentityCredentials", "v1.0",
    )  # fmt: skip
    fic = body(credential)
    assert fic["name"].startswith("${app.uniqueName}/")
    assert fic["issuer"] == "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    assert fic["subject"] == "identityPrincipalId"
    assert fic["audiences"] == ["tokenExchangeAudience"]
    passed = body(parse(MAIN)["modules"]["multiTenantApp"])["params"]
    assert render(passed["identityPrincipalId"]) == "identity.properties.principalId"
    # Secretless: no password or key credential anywhere in the templates.
    for relative in (APP, MAIN, FUNCTION):
        keys = {key for key, _ in walk(parse(relative))}
        assert not keys & {"passwordCredentials", "keyCredentials"}, relative
        assert not re.search(r"passwordCredentials|keyCredentials|clientSecret", text(relative)), relative


def test_each_clouds_exchange_audience_is_the_one_the_function_asks_for() -> None:
    variables = parse(MAIN)["variables"]
    audiences = variables["tokenExchangeAudiences"]["value"]
    for cloud, base_url in variables["graphBaseUrls"]["value"].items():
        assert exchange_scope(authority_for(base_url, None)) == f"{audiences[cloud]}/.default", cloud
    assert render(body(parse(MAIN)["modules"]["multiTenantApp"])["params"]["tokenExchangeAudience"]) == (
        "tokenExchangeAudiences[graphCloud]"
    )


def test_the_app_is_made_only_when_tenants_are_served_and_none_is_given() -> None:
    assert parse(MAIN)["parameters"]["servedTenantIds"]["default"] == []
    assert parse(MAIN)["parameters"]["multiTenantAppClientId"]["default"] == ""
    assert condition(parse(MAIN)["modules"]["multiTenantApp"]) == "createMultiTenantApp"
    assert (
        "var createMultiTenantApp = servesCustomerTenants && empty(multiTenantAppClientId) && "
        "(graphCloud == 'global') && (environment().name == 'AzureCloud')"
    ) in text(MAIN)


def test_the_tenant_settings_reach_the_function() -> None:
    settings = _app_settings()
    assert {name: settings[name] for name in ("HOME_TENANT_ID", "SERVED_TENANT_IDS", "MULTITENANT_APP_CLIENT_ID",
                                              "AZURE_AUTHORITY_HOST", "GRAPH_TENANT_WRITE_BUDGETS")} == {
        "HOME_TENANT_ID": "homeTenantId", "SERVED_TENANT_IDS": "servedTenantIds",
        "MULTITENANT_APP_CLIENT_ID": "multiTenantAppClientId", "AZURE_AUTHORITY_HOST": "authorityHost",
        "GRAPH_TENANT_WRITE_BUDGETS": "graphTenantWriteBudgets",
    }  # fmt: skip
    assert render(settings["GRAPH_SLOT_WAIT_SECONDS"]) == "string(graphSlotWaitSeconds)"
    passed = {k: render(v) for k, v in body(parse(MAIN)["modules"]["functionApp"])["params"].items()}
    assert passed["homeTenantId"] == "tenant().tenantId"
    assert passed["servedTenantIds"] == "join(servedTenantIds, ,)"
    assert passed["authorityHost"] == "environment().authentication.loginEndpoint"
    assert "multiTenantApp!.outputs.appId : multiTenantAppClientId" in text(MAIN)
    slot_wait = parse(MAIN)["parameters"]["graphSlotWaitSeconds"]["default"]
    assert slot_wait == Settings.model_fields["GRAPH_SLOT_WAIT_SECONDS"].default


def test_the_function_accepts_what_the_template_deploys() -> None:
    """Empty strings for a single-tenant deployment, and the cloud's login endpoint with its slash."""
    single = Settings(HOME_TENANT_ID="72f988bf-86f1-41af-91ab-2d7cd011db47", SERVED_TENANT_IDS="",
                      MULTITENANT_APP_CLIENT_ID="", GRAPH_TENANT_WRITE_BUDGETS="",
                      AZURE_AUTHORITY_HOST="https://login.microsoftonline.com/")  # fmt: skip
    assert (single.SERVED_TENANT_IDS, single.MULTITENANT_APP_CLIENT_ID) == ((), None)
    assert single.AZURE_AUTHORITY_HOST == "https://login.microsoftonline.com"


@pytest.mark.parametrize(("limit", "instances", "reserve"), [(100, 2, 50), (100, 1, 0), (100, 2, 99), (20, 3, 5)])
def test_a_tenants_reserve_gives_it_the_budget_rule_of_the_home_tenant(limit: int, instances: int, reserve: int):
    assert "for r in items(graphTenantWriteReserves): '${r.key}=${max(2, graphWriteLimit - r.value) - 1}'" in text(MAIN)
    assert "var graphTenantWriteBudgets = join(graphTenantWriteBudgetItems, ',')" in text(MAIN)
    tenant = "1111bbbb-0000-4000-8000-000000000002"
    budget = max(2, limit - reserve) - 1  # the lambda, in Python: the deployment's, every instance together
    settings = Settings(SERVED_TENANT_IDS=tenant, MULTITENANT_APP_CLIENT_ID="a99a0000-0000-4000-8000-00000000a990",
                        GRAPH_TENANT_WRITE_BUDGETS=f"{tenant}={budget},home={budget}",
                        GRAPH_PACING_MAX_INSTANCES=instances)  # fmt: skip
    assert settings.write_budget(tenant) == settings.write_budget(None) == budget
    split = settings.split_of(settings.write_budget(tenant))
    if split > 0:  # a share is left: unsynchronised instances stay inside the tenant's share
        assert instances * (math.floor(split) + 1) <= limit - reserve


def test_serving_other_tenants_doubles_the_hosts_queue_concurrency() -> None:
    host = json.loads((REPO / "host.json").read_text(encoding="utf-8"))["extensions"]["queues"]
    assert (host["batchSize"], host["newBatchThreshold"]) == (8, 4)  # one tenant: host.json as it is
    assert "var servesCustomerTenants = multiTenant || !empty(servedTenantIds)" in text(MAIN)
    assert "var queueBatchSize = servesCustomerTenants ? 16 : 8" in text(MAIN)
    assert "var queueNewBatchThreshold = servesCustomerTenants ? 8 : 4" in text(MAIN)
    settings = _app_settings()
    assert render(settings["AzureFunctionsJobHost__extensions__queues__batchSize"]) == "string(queueBatchSize)"
    assert render(settings["AzureFunctionsJobHost__extensions__queues__newBatchThreshold"]) == (
        "string(queueNewBatchThreshold)"
    )
    passed = body(parse(MAIN)["modules"]["functionApp"])["params"]
    assert (passed["queueBatchSize"], passed["queueNewBatchThreshold"]) == ("queueBatchSize", "queueNewBatchThreshold")
    # The app reads them as the host does (the session pool and the last-delivery rule follow).
    prefix = "AzureFunctionsJobHost__extensions__queues__"
    options = queue_options(app_settings={f"{prefix}batchSize": "16", f"{prefix}newBatchThreshold": "8"})
    assert options.max_concurrency == 24


def test_the_registry_table_is_deployed_read_only_for_the_function_and_writable_for_the_operator() -> None:
    storage = parse("modules/storage.bicep")
    table = body(storage["resources"]["registryTable"])
    assert (table["parent"], render(table["name"])) == ("tableService", "registryTableName")
    assert render(storage["outputs"]["registryTableName"]["value"]) == "registryTable.name"
    assert "var registryTableName = 'certstatetenants'" in text(MAIN)
    assert Settings.model_fields["REGISTRY_TABLE_NAME"].default == "certstatetenants"
    settings = _app_settings()
    assert (settings["REGISTRY_TABLE_NAME"], settings["REGISTRY_REFRESH_SECONDS"]) == ("registryTableName", "30")
    rbac = parse("modules/rbac.bicep")["resources"]
    reader, writer = body(rbac["functionRegistryReader"]), body(rbac["operatorRegistryWriter"])
    assert (reader["scope"], writer["scope"]) == ("registryTable", "registryTable")
    assert "storageTableDataReader" in render(reader["properties"]["roleDefinitionId"])
    assert "storageTableDataContributor" in render(writer["properties"]["roleDefinitionId"])
    assert render(reader["properties"]["principalId"]) == "functionPrincipalId"
    assert render(writer["properties"]["principalId"]) == "operatorPrincipalId"
    assert parse(MAIN)["parameters"]["multiTenant"]["default"] is False
    assert "output REGISTRY_TABLE_NAME string = storage.outputs.registryTableName" in text(MAIN)
