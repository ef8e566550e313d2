"""Static checks of the deployment templates (infra/), without a Bicep compiler.

They pin what a reviewer would otherwise check by hand: the storage account is Entra-only, the Flex
app carries every setting `shared.settings.Settings` reads and none that Flex forbids, each role is
the narrow one meant for its principal and scope, the pacing arithmetic holds, the Logic App sends
raw JSON, and no output leaks a secret.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from shared.settings import CredentialMode, Settings
from tests.infra.bicep import (
    INFRA,
    REPO,
    Template,
    bicep_files,
    body,
    condition,
    decorator,
    evaluate,
    evaluator,
    parse,
    render,
    resources_of_type,
    text,
    unquote,
    walk,
    words,
)
from tests.infra.bicep import module as _module
from tests.infra.bicep import param_default as _param_default
from tests.infra.bicep import resource as _resource

MAIN = "main.bicep"
STORAGE = "modules/storage.bicep"
FUNCTION = "modules/functionapp.bicep"
RBAC = "modules/rbac.bicep"
LOGIC = "modules/logicapp.bicep"
GRAPH = "modules/graph-app-role.bicep"
MONITORING = "modules/monitoring.bicep"

# Built-in role definition ids (/work/shared/reference/functions-facts.md section 3; Azure built-in roles).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_QUEUE_DATA_MESSAGE_PROCESSOR = "8a0f0c08-91a1-4084-bc3d-661d67233fed"
STORAGE_QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
STORAGE_QUEUE_DATA_READER = "19e7f393-937e-4f77-808e-94535e297925"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_TABLE_DATA_READER = "76199698-9eea-4c19-bc75-cec21354c6b6"

STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
APP_INSIGHTS = "Microsoft.Insights/components"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"

# App settings and site properties that Flex Consumption rejects or that belong elsewhere on Flex
# (functions-facts.md section 5, "Flex Consumption plan deprecations").
FLEX_FORBIDDEN_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "WEBSITE_VNET_ROUTE_ALL",
        "WEBSITE_CONTENTOVERVNET",
        "WEBSITE_DNS_SERVER",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    }
)
FLEX_FORBIDDEN_SITE_PROPERTIES = frozenset(
    {
        "linuxFxVersion",
        "windowsFxVersion",
        "alwaysOn",
        "ftpsState",
        "use32BitWorkerProcess",
        "isReserved",
        "functionAppScaleLimit",
        "preWarmedInstanceCount",
        "containerSize",
    }
)
# Key-based settings that must never come back: identity-based connections replace them.
KEY_BASED_SETTINGS = frozenset({"AzureWebJobsStorage", "APPINSIGHTS_INSTRUMENTATIONKEY", "AzureWebJobsDashboard"})


def _app_settings() -> dict[str, Any]:
    site = body(_resource(FUNCTION, "site"))
    entries = site["properties"]["siteConfig"]["appSettings"]
    settings: dict[str, Any] = {}
    for entry in entries:
        assert set(entry) == {"name", "value"}, entry
        assert entry["name"] not in settings, f"duplicate app setting {entry['name']}"
        settings[entry["name"]] = entry["value"]
    return settings


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    template = parse(str(path.relative_to(INFRA)))
    assert template.get("resources") or template.get("modules"), f"{path} declares nothing"


def test_the_expected_templates_exist() -> None:
    found = {str(p.relative_to(INFRA)) for p in bicep_files()}
    assert {MAIN, STORAGE, FUNCTION, RBAC, LOGIC, GRAPH, MONITORING} <= found


def test_main_is_resource_group_scoped() -> None:
    assert parse(MAIN)["globals"]["scope"]["value"] == "resourceGroup"


def test_module_calls_match_module_parameters() -> None:
    """What a compiler would catch: unknown or missing module parameters, missing module files."""
    for symbol, module in parse(MAIN)["modules"].items():
        path = module["detail"]["path"]
        assert (INFRA / path).is_file(), f"module {symbol}: {path} does not exist"
        declared = parse(path).get("parameters", {})
        passed = set(body(module)["params"])
        assert passed <= set(declared), f"module {symbol} passes unknown params {passed - set(declared)}"
        required = {name for name, param in declared.items() if "default" not in param}
        assert required <= passed, f"module {symbol} misses required params {required - passed}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_unused_parameters_or_variables(path: Path) -> None:
    relative = str(path.relative_to(INFRA))
    template = parse(relative)
    source = text(relative)
    for kind in ("parameters", "variables"):
        for name in template.get(kind, {}):
            assert words(source, name) >= 2, f"{relative}: {kind[:-1]} {name} is never used"


# --- storage ----------------------------------------------------------------------------------


def test_storage_account_is_entra_only_and_tls12() -> None:
    accounts = resources_of_type(parse(STORAGE), STORAGE_ACCOUNT)
    assert list(accounts) == ["account"]
    props = body(accounts["account"])["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowCrossTenantReplication"] is False


def test_deployment_container_is_private() -> None:
    containers = resources_of_type(parse(STORAGE), "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert [body(c)["properties"]["publicAccess"] for c in containers.values()] == ["None"]


def test_queues_input_poison_result() -> None:
    queues = {render(body(q)["name"]) for q in resources_of_type(parse(STORAGE), QUEUE).values()}
    assert queues == {"inputQueueName", "${inputQueueName}-poison", "resultQueueName"}
    passed = body(_module("storage"))["params"]
    assert passed["inputQueueName"] == "inputQueueName"
    assert passed["resultQueueName"] == "resultQueueName"


def test_queue_name_defaults_match_settings() -> None:
    fields = Settings.model_fields
    assert _param_default(MAIN, "inputQueueName") == fields["INPUT_QUEUE_NAME"].default
    assert _param_default(MAIN, "resultQueueName") == fields["RESULT_QUEUE_NAME"].default
    # 56 characters at most, so that "<input>-poison" is still a valid queue name.
    for name in ("inputQueueName", "resultQueueName"):
        assert decorator(parse(MAIN)["parameters"][name], "max_length") == 56
    Settings(INPUT_QUEUE_NAME=_param_default(MAIN, "inputQueueName"))  # the app accepts the defaults


def test_trigger_uses_the_queue_name_settings() -> None:
    function_app = REPO / "function_app.py"
    if not function_app.is_file():
        pytest.skip("function_app.py is not written yet; the app settings side is checked elsewhere")
    source = function_app.read_text(encoding="utf-8")
    assert re.search(r"queue_trigger\([^)]*queue_name\s*=\s*[\"']%INPUT_QUEUE_NAME%[\"']", source, re.S)
    assert re.search(r"queue_output\([^)]*queue_name\s*=\s*[\"']%RESULT_QUEUE_NAME%[\"']", source, re.S)
    assert len(re.findall(r"connection\s*=\s*[\"']AzureWebJobsStorage[\"']", source)) >= 2


def test_host_json_reads_raw_text_as_the_logic_app_sends_it() -> None:
    host = json.loads((REPO / "host.json").read_text(encoding="utf-8"))
    assert host["extensions"]["queues"]["messageEncoding"] == "none"


# --- function app -----------------------------------------------------------------------------


LOCAL_ONLY_SETTINGS = {"AzureWebJobsStorage"}
"""The connection-string form of the storage connection: Azurite and `func start`; Azure uses the identity form."""


def test_every_setting_the_code_reads_is_deployed() -> None:
    read = {str(field.validation_alias or name) for name, field in Settings.model_fields.items()}
    missing = read - LOCAL_ONLY_SETTINGS - set(_app_settings())
    assert not missing, f"app settings missing for {sorted(missing)}"


def test_deployed_outage_settings_are_the_codes_defaults() -> None:
    deployed = _app_settings()
    for name in ("BREAKER_FAILURE_THRESHOLD", "BREAKER_COOLDOWN_SECONDS", "BREAKER_MAX_COOLDOWN_SECONDS",
                 "DEFERRAL_MAX_SECONDS", "AUDIT_WAIT_SECONDS"):  # fmt: skip
        default = Settings.model_fields[name].default
        assert float(deployed[name].strip("'")) == float(default), name


def test_no_setting_that_flex_forbids_or_that_carries_a_key() -> None:
    names = set(_app_settings())
    assert not names & FLEX_FORBIDDEN_SETTINGS
    assert not names & KEY_BASED_SETTINGS
    source = text(FUNCTION)
    for name in FLEX_FORBIDDEN_SETTINGS | KEY_BASED_SETTINGS:
        assert not re.search(rf"['\s]{name}['\s:]", source), f"{name} appears in {FUNCTION}"


def test_identity_based_host_storage() -> None:
    settings = _app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert (
        settings["AzureWebJobsStorage__blobServiceUri"]
        == "https://${account.name}.blob.${environment().suffixes.storage}"
    )
    assert (
        settings["AzureWebJobsStorage__queueServiceUri"]
        == "https://${account.name}.queue.${environment().suffixes.storage}"
    )
    # No "__serviceUri" alias: one prefix across services breaks the poison queue (azure-functions-host#8019).
    assert "AzureWebJobsStorage__serviceUri" not in settings


def test_app_settings_values() -> None:
    settings = _app_settings()
    assert settings["CREDENTIAL_MODE"] == CredentialMode.MANAGED_IDENTITY.value
    assert settings["MANAGED_IDENTITY_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert render(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == "appInsights.properties.ConnectionString"
    assert settings["GRAPH_BASE_URL"] == "graphBaseUrl"
    assert settings["INPUT_QUEUE_NAME"] == "inputQueueName"
    assert settings["RESULT_QUEUE_NAME"] == "resultQueueName"
    for name, param in {
        "GRAPH_CONNECT_TIMEOUT_SECONDS": "graphConnectTimeoutSeconds",
        "GRAPH_READ_TIMEOUT_SECONDS": "graphReadTimeoutSeconds",
        "GRAPH_MAX_ATTEMPTS": "graphMaxAttempts",
        "GRAPH_MAX_WAIT_SECONDS": "graphMaxWaitSeconds",
        "GRAPH_WRITE_BUDGET": "graphWriteBudget",
        "GRAPH_WRITE_WINDOW_SECONDS": "graphWriteWindowSeconds",
    }.items():
        assert render(settings[name]) == f"string({param})", name


def test_main_passes_the_setting_values() -> None:
    passed = body(_module("functionApp"))["params"]
    assert render(passed["identityId"]) == "identity.id"
    assert render(passed["identityClientId"]) == "identity.properties.clientId"
    assert render(passed["graphBaseUrl"]) == "graphBaseUrls[graphCloud]"
    assert passed["maximumInstanceCount"] == "maximumInstanceCount"  # sized from capacity, never cut by pacing
    same_name = (
        "inputQueueName",
        "resultQueueName",
        "graphWriteBudget",
        "graphWriteWindowSeconds",
        "graphConnectTimeoutSeconds",
        "graphReadTimeoutSeconds",
        "graphMaxAttempts",
        "graphMaxWaitSeconds",
        "instanceMemoryMB",
        "pythonVersion",
    )
    for name in same_name:
        assert passed[name] == name, name


def test_setting_defaults_match_the_code_defaults() -> None:
    fields = Settings.model_fields
    pairs = {
        "graphConnectTimeoutSeconds": "GRAPH_CONNECT_TIMEOUT_SECONDS",
        "graphReadTimeoutSeconds": "GRAPH_READ_TIMEOUT_SECONDS",
        "graphMaxAttempts": "GRAPH_MAX_ATTEMPTS",
        "graphMaxWaitSeconds": "GRAPH_MAX_WAIT_SECONDS",
        "graphWriteWindowSeconds": "GRAPH_WRITE_WINDOW_SECONDS",
    }
    for param, field in pairs.items():
        assert _param_default(MAIN, param) == fields[field].default, param


def test_flex_consumption_shape() -> None:
    plan = body(_resource(FUNCTION, "plan"))
    assert plan["kind"] == "functionapp"
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True

    site_resource = _resource(FUNCTION, "site")
    assert site_resource["type"] == "Microsoft.Web/sites"
    assert site_resource["api_version"] >= "2023-12-01"  # functionAppConfig needs 2023-12-01 or later
    site = body(site_resource)
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["scmMinTlsVersion"] == "1.2"

    config = props["functionAppConfig"]
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    scale = config["scaleAndConcurrency"]
    assert (scale["instanceMemoryMB"], scale["maximumInstanceCount"]) == ("instanceMemoryMB", "maximumInstanceCount")
    assert _param_default(MAIN, "instanceMemoryMB") == 2048
    assert decorator(parse(MAIN)["parameters"]["instanceMemoryMB"], "allowed") == [512, 2048, 4096]


def test_always_ready_instances_are_for_the_queue_triggers_group_none_by_default() -> None:
    """Flex names a non-HTTP trigger's group `function:<name>`: the one that keeps the queue drained."""
    scale = body(_resource(FUNCTION, "site"))["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    choice = scale["alwaysReady"]["operator"]["operands"]
    assert choice["condition"]["operator"]["operands"] == {"operand_1": "alwaysReadyInstances", "operand_2": 0}
    assert choice["true_value"] == []
    (group,) = choice["false_value"]
    app = (REPO / "function_app.py").read_text(encoding="utf-8")
    trigger = re.search(r'@app\.function_name\(name="(\w+)"\)\n@app\.queue_trigger', app)
    assert trigger is not None
    assert group == {"name": f"function:{trigger.group(1)}", "instanceCount": "alwaysReadyInstances"}
    assert _param_default(MAIN, "alwaysReadyInstances") == 0
    passed = body(_module("functionApp"))["params"]
    assert render(passed["alwaysReadyInstances"]) == "min(alwaysReadyInstances, maximumInstanceCount)"


def test_python_versions_are_the_ones_the_code_supports() -> None:
    """Every runtime the template offers satisfies requires-python; the default is the newest (CI tests each)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    offered = decorator(parse(MAIN)["parameters"]["pythonVersion"], "allowed")
    assert offered, "pythonVersion must list its versions"
    unsupported = [version for version in offered if Version(version) not in requires]
    assert not unsupported, f"pythonVersion offers {unsupported}, outside requires-python {requires}"
    assert min(offered, key=Version) == pyproject["tool"]["mypy"]["python_version"]  # type-checked at the oldest
    assert _param_default(MAIN, "pythonVersion") == max(offered, key=Version)


def test_no_site_property_that_flex_forbids() -> None:
    site = body(_resource(FUNCTION, "site"))
    for key, _ in walk(site):
        name = unquote(key)
        assert name not in FLEX_FORBIDDEN_SITE_PROPERTIES, name
        assert not re.fullmatch(r"vnet\w*Enabled", name), name


def test_azd_finds_the_app_by_its_service_tag() -> None:
    site = body(_resource(FUNCTION, "site"))
    assert "'azd-service-name': serviceName" in text(FUNCTION)
    assert render(site["tags"]).startswith("union(tags")
    assert body(_module("functionApp"))["params"]["serviceName"] == "certstate"
    azure_yaml = (REPO / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^services:\n  certstate:\n", azure_yaml, re.M)
    for line in ("    project: .", "    language: python", "    host: function", "  path: infra", "  module: main"):
        assert re.search(rf"^{re.escape(line)}$", azure_yaml, re.M), line


def test_function_waits_for_its_roles() -> None:
    assert body(_module("functionApp"))["dependsOn"][0] == "rbac"


# --- monitoring -------------------------------------------------------------------------------


def test_monitoring_refuses_local_auth() -> None:
    insights = body(_resource(MONITORING, "appInsights"))["properties"]
    assert insights["DisableLocalAuth"] is True
    assert render(insights["WorkspaceResourceId"]) == "workspace.id"
    workspace = body(_resource(MONITORING, "workspace"))["properties"]
    assert workspace["features"]["disableLocalAuth"] is True


# --- roles ------------------------------------------------------------------------------------


def _role_assignments(relative: str) -> list[tuple[str, str, str, str, str]]:
    """(role GUID, principal, principal type, scope resource type, scope resource name) per single assignment.

    Loops (rbac.bicep's queueRoles, one per queueGrants row) are checked by the queue-grant tests.
    """
    template = parse(relative)
    found = []
    for symbol, resource in resources_of_type(template, ROLE_ASSIGNMENT).items():
        if "loop_type" in resource["config"]:
            continue
        config = body(resource)
        props = config["properties"]
        role_fn = props["roleDefinitionId"]["function"]
        assert role_fn["type"] == "subscription_resource_id", symbol
        assert role_fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions", symbol
        role_var = role_fn["parameters"]["resource_name_1"]
        role_guid = template["variables"][role_var]["value"]
        scope_symbol = config["scope"]
        scope = template["resources"][scope_symbol]
        name_fn = config["name"]["function"]
        assert name_fn["type"] == "guid", f"{symbol}: name must come from guid()"
        guid_args = [render(value) for value in name_fn["parameters"].values()]
        assert guid_args[0] == f"{scope_symbol}.id", f"{symbol}: guid() must start with the scope id"
        assert guid_args[-1] == role_var, f"{symbol}: guid() must include the role"
        assert len(guid_args) == 3, symbol
        found.append(
            (role_guid, render(props["principalId"]), props["principalType"], scope["type"], body(scope)["name"])
        )
    return found


def _queue_grants(variable: str) -> set[tuple[str, str, str, str]]:
    """(role GUID, principal, principal type, queue) per row of one of rbac.bicep's grant lists."""
    template = parse(RBAC)
    rows = template["variables"][variable]["value"]
    found = set()
    for row in rows:
        assert set(row) == {"queue", "principalId", "principalType", "role", "why"}, row
        assert len(row["why"]) > 20, f"{variable}: say why {row['queue']} needs {row['role']}"
        found.add((template["variables"][row["role"]]["value"], row["principalId"], row["principalType"], row["queue"]))
    return found


def test_function_identity_roles_are_exactly_these() -> None:
    """Queue roles on the three queues it uses, one role per queue; the only account-wide role is for blobs."""
    assert _queue_grants("functionQueueGrants") == {
        (STORAGE_QUEUE_DATA_CONTRIBUTOR, "functionPrincipalId", "ServicePrincipal", "inputQueueName"),
        (STORAGE_QUEUE_DATA_MESSAGE_SENDER, "functionPrincipalId", "ServicePrincipal", "poisonQueueName"),
        (STORAGE_QUEUE_DATA_MESSAGE_SENDER, "functionPrincipalId", "ServicePrincipal", "resultQueueName"),
        (STORAGE_QUEUE_DATA_READER, "functionPrincipalId", "ServicePrincipal", "poisonQueueName"),
        (STORAGE_QUEUE_DATA_READER, "functionPrincipalId", "ServicePrincipal", "resultQueueName"),
    }
    assert {a for a in _role_assignments(RBAC) if a[1] == "functionPrincipalId"} == {
        (STORAGE_BLOB_DATA_OWNER, "functionPrincipalId", "ServicePrincipal", STORAGE_ACCOUNT, "storageAccountName"),
        (MONITORING_METRICS_PUBLISHER, "functionPrincipalId", "ServicePrincipal", APP_INSIGHTS, "appInsightsName"),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, "functionPrincipalId", "ServicePrincipal", TABLE, "auditTableName"),
        (STORAGE_TABLE_DATA_READER, "functionPrincipalId", "ServicePrincipal", TABLE, "registryTableName"),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, "functionPrincipalId", "ServicePrincipal", TABLE, "pacingTableName"),
    }
    assert render(body(_module("rbac"))["params"]["functionPrincipalId"]) == "identity.properties.principalId"


def test_queue_roles_are_granted_on_the_queues_not_the_account() -> None:
    template = parse(RBAC)
    roles = _resource(RBAC, "queueRoles")
    assert roles["config"]["loop_type"] == {
        "type": "array_index",
        "detail": {"item_name": "grant", "index_name": "i", "array_name": "queueGrants"},
    }
    config = body(roles)
    assert render(config["scope"]) == "grantedQueues[i]"
    guid_args = [render(value) for value in config["name"]["function"]["parameters"].values()]
    assert guid_args == ["grantedQueues[i].id", "grant.principalId", "grant.role"]
    props = config["properties"]
    assert (
        render(props["roleDefinitionId"])
        == "subscription_resource_id(Microsoft.Authorization/roleDefinitions, grant.role)"
    )
    assert (render(props["principalId"]), render(props["principalType"])) == (
        "grant.principalId",
        "grant.principalType",
    )

    queues = _resource(RBAC, "grantedQueues")
    assert (queues["type"], queues["existing"]) == (QUEUE, True)
    assert queues["config"]["loop_type"]["detail"] == {"item_name": "grant", "array_name": "queueGrants"}
    assert body(queues)["parent"] == "queueService"
    assert render(body(queues)["name"]) == "grant.queue"
    assert body(template["resources"]["queueService"])["parent"] == "account"

    # No queue role anywhere on the account.
    queue_roles = {
        STORAGE_QUEUE_DATA_CONTRIBUTOR,
        STORAGE_QUEUE_DATA_MESSAGE_SENDER,
        STORAGE_QUEUE_DATA_MESSAGE_PROCESSOR,
        STORAGE_QUEUE_DATA_READER,
    }
    for relative in (RBAC, LOGIC):
        for role, principal, _, scope_type, _ in _role_assignments(relative):
            assert role not in queue_roles or scope_type == QUEUE, (relative, principal, role)


def test_the_granted_queues_are_the_deployed_ones() -> None:
    passed = body(_module("rbac"))["params"]
    for name in ("inputQueueName", "poisonQueueName", "resultQueueName"):
        assert render(passed[name]) == f"storage.outputs.{name}", name
    outputs = parse(STORAGE)["outputs"]
    assert render(outputs["poisonQueueName"]["value"]) == "poisonQueue.name"
    assert render(body(_resource(STORAGE, "poisonQueue"))["name"]) == "${inputQueueName}-poison"


def test_operator_roles_are_queue_scoped_and_optional() -> None:
    assert _queue_grants("operatorQueueGrants") == {
        (STORAGE_QUEUE_DATA_MESSAGE_SENDER, "operatorPrincipalId", "operatorPrincipalType", "inputQueueName"),
        (STORAGE_QUEUE_DATA_MESSAGE_PROCESSOR, "operatorPrincipalId", "operatorPrincipalType", "resultQueueName"),
    }
    assert {a for a in _role_assignments(RBAC) if a[1] == "operatorPrincipalId"} == {
        (STORAGE_TABLE_DATA_READER, "operatorPrincipalId", "operatorPrincipalType", TABLE, "auditTableName"),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, "operatorPrincipalId", "operatorPrincipalType", TABLE, "registryTableName"),
    }
    assert render(condition(_resource(RBAC, "operatorAuditReader"))["operator"]["operands"]["bool_value"]) == (
        "empty(operatorPrincipalId)"
    )
    assert (
        "var queueGrants = concat(functionQueueGrants, empty(operatorPrincipalId) ? [] : operatorQueueGrants)"
        in text(RBAC)
    )
    assert _param_default(MAIN, "operatorPrincipalId") == ""


def test_rbac_module_has_no_other_assignment() -> None:
    # blobs, telemetry, the audit table's and the registry's two each, the pacing table
    assert len(_role_assignments(RBAC)) == 7
    looped = [s for s, r in resources_of_type(parse(RBAC), ROLE_ASSIGNMENT).items() if "loop_type" in r["config"]]
    assert looped == ["queueRoles"]


def test_logic_app_may_only_send_to_the_input_queue() -> None:
    assert _role_assignments(LOGIC) == [
        (
            STORAGE_QUEUE_DATA_MESSAGE_SENDER,
            "workflow.identity.principalId",
            "ServicePrincipal",
            QUEUE,
            "inputQueueName",
        )
    ]
    queue = _resource(LOGIC, "inputQueue")
    assert queue["existing"] is True
    assert body(queue)["parent"] == "queueService"
    assert body(_resource(LOGIC, "queueService"))["parent"] == "account"
    assert render(body(_module("logicApp"))["params"]["inputQueueName"]) == "storage.outputs.inputQueueName"


def test_no_role_assignments_anywhere_else() -> None:
    for path in bicep_files():
        relative = str(path.relative_to(INFRA))
        if relative not in (RBAC, LOGIC):
            assert not resources_of_type(parse(relative), ROLE_ASSIGNMENT), relative


def test_role_guids_are_the_built_in_ones() -> None:
    variables = parse(RBAC)["variables"]
    assert {name: v["value"] for name, v in variables.items() if isinstance(v["value"], str)} == {
        "storageBlobDataOwner": STORAGE_BLOB_DATA_OWNER,
        "storageQueueDataContributor": STORAGE_QUEUE_DATA_CONTRIBUTOR,
        "storageQueueDataMessageSender": STORAGE_QUEUE_DATA_MESSAGE_SENDER,
        "storageQueueDataMessageProcessor": STORAGE_QUEUE_DATA_MESSAGE_PROCESSOR,
        "monitoringMetricsPublisher": MONITORING_METRICS_PUBLISHER,
        "storageQueueDataReader": STORAGE_QUEUE_DATA_READER,
        "storageTableDataContributor": STORAGE_TABLE_DATA_CONTRIBUTOR,
        "storageTableDataReader": STORAGE_TABLE_DATA_READER,
    }
    assert parse(LOGIC)["variables"]["storageQueueDataMessageSender"]["value"] == STORAGE_QUEUE_DATA_MESSAGE_SENDER


# --- Microsoft Graph app role -----------------------------------------------------------------


def test_graph_app_role_through_the_graph_extension() -> None:
    template = parse(GRAPH)
    assert "microsoftGraphV1" in template["extensions"]
    config = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8"))
    assert config["extensions"]["microsoftGraphV1"] == "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"

    graph_sp = _resource(GRAPH, "graphServicePrincipal")
    assert (graph_sp["type"], graph_sp["api_version"], graph_sp["existing"]) == (
        "Microsoft.Graph/servicePrincipals",
        "v1.0",
        True,
    )
    assert body(graph_sp)["appId"] == "00000003-0000-0000-c000-000000000000"

    grant = _resource(GRAPH, "appRoleAssignment")
    assert (grant["type"], grant["api_version"]) == ("Microsoft.Graph/appRoleAssignedTo", "v1.0")
    assert body(grant)["principalId"] == "principalId"
    assert render(body(grant)["resourceId"]) == "graphServicePrincipal.id"
    assert "appRoleId: filter(graphServicePrincipal.appRoles, role => role.value == appRoleValue)[0].id" in text(GRAPH)
    assert _param_default(GRAPH, "appRoleValue") == "DeviceManagementConfiguration.ReadWrite.All"


def test_graph_grant_is_optional_and_public_cloud_only() -> None:
    assert _param_default(MAIN, "grantGraphAppRole") is True
    module = _module("graphAppRole")
    assert condition(module) == "graphGrantEnabled"
    assert render(body(module)["params"]["principalId"]) == "identity.properties.principalId"
    assert (
        "var graphGrantEnabled = grantGraphAppRole && (graphCloud == 'global') && (environment().name == 'AzureCloud')"
        in text(MAIN)
    )


def test_grant_script_exists_and_is_valid_bash() -> None:
    script = INFRA / "scripts" / "grant-graph-app-role.sh"
    assert script.stat().st_mode & 0o111, "the script must be executable"
    source = script.read_text(encoding="utf-8")
    assert "DeviceManagementConfiguration.ReadWrite.All" in source
    assert "az rest" in source


# --- national clouds --------------------------------------------------------------------------


def test_graph_cloud_maps_to_graph_base_url() -> None:
    template = parse(MAIN)
    allowed = decorator(template["parameters"]["graphCloud"], "allowed")
    urls = template["variables"]["graphBaseUrls"]["value"]
    assert allowed == ["global", "usgov", "usgovdod", "china"]
    assert urls == {
        "global": "https://graph.microsoft.com/beta",
        "usgov": "https://graph.microsoft.us/beta",
        "usgovdod": "https://dod-graph.microsoft.us/beta",
        "china": "https://microsoftgraph.chinacloudapi.cn/beta",
    }
    assert urls[_param_default(MAIN, "graphCloud")] == Settings.model_fields["GRAPH_BASE_URL"].default
    for url in urls.values():
        accepted = Settings(GRAPH_BASE_URL=url)
        assert url == accepted.GRAPH_BASE_URL  # accepted unchanged by the validator


# --- pacing -----------------------------------------------------------------------------------


def _upper_bound(field: str) -> int:
    bounds = [item.le for item in Settings.model_fields[field].metadata if isinstance(getattr(item, "le", None), int)]
    assert len(bounds) == 1, field
    bound: int = bounds[0]
    return bound


def _pacing(template: Template, limit: int, instances: int, reserve: int = 0) -> int:
    """The deployed GRAPH_WRITE_BUDGET."""
    lookup = evaluator(
        template, {"graphWriteLimit": limit, "maximumInstanceCount": instances, "graphWriteReserve": reserve}
    )
    budget: int = evaluate(template["variables"]["graphWriteBudget"]["value"], lookup)
    return budget


def test_pacing_defaults() -> None:
    template = parse(MAIN)
    assert _param_default(MAIN, "graphWriteLimit") == 100
    assert _param_default(MAIN, "graphWriteReserve") == 0
    assert _param_default(MAIN, "maximumInstanceCount") == 2
    assert _pacing(template, 100, 2) == 99  # one budget for the deployment, whatever the instance count
    assert _pacing(template, 100, 1) == 99
    # The code's own default is the deployed default.
    assert Settings.model_fields["GRAPH_WRITE_BUDGET"].default == 99


@pytest.mark.parametrize("reserve", [0, 1, 10])
@pytest.mark.parametrize("limit", [2, 3, 10, 19, 20, 21, 99, 100, 101, 150, 1000, 10_000])
def test_pacing_never_limits_the_instances_and_their_split_never_exceeds_the_limit(limit: int, reserve: int) -> None:
    """The budget is the deployment's; without the table each instance paces at its split (`Settings.split_of`)."""
    template = parse(MAIN)
    params = template["parameters"]
    low, high = (
        decorator(params["maximumInstanceCount"], "min_value"),
        decorator(params["maximumInstanceCount"], "max_value"),
    )
    assert (low, high) == (1, 1000)
    assert (
        decorator(params["graphWriteLimit"], "min_value") <= limit <= decorator(params["graphWriteLimit"], "max_value")
    )
    available = max(2, limit - reserve)
    settings = Settings()
    for instances in range(low, high + 1):
        budget = _pacing(template, limit, instances, reserve)
        assert budget == available - 1 >= 1  # one write kept back for send jitter and clock skew
        assert budget <= _upper_bound("GRAPH_WRITE_BUDGET")  # the app accepts it
        split = settings.model_copy(update={"GRAPH_PACING_MAX_INSTANCES": instances}).split_of(budget)
        if split > 0:  # no share is left from `available` instances on: an instance writes nothing then
            # An evenly spaced pacer can land floor(split) + 1 writes in one of Graph's windows.
            assert instances * (math.floor(split) + 1) <= available, (limit, reserve, instances, split)


def test_the_template_sets_the_pacing_table_the_instance_count_and_the_worker_s_threads() -> None:
    settings = _app_settings()
    assert settings["GRAPH_PACING_TABLE_NAME"] == "pacingTableName"
    assert render(settings["GRAPH_PACING_MAX_INSTANCES"]) == "string(maximumInstanceCount)"
    assert render(settings["PYTHON_THREADPOOL_THREAD_COUNT"]) == "string(workerThreadCount)"
    assert "var workerThreadCount = queueBatchSize + queueNewBatchThreshold" in text(MAIN)
    passed = body(_module("functionApp"))["params"]
    assert render(passed["pacingTableName"]) == "storage.outputs.pacingTableName"


# --- Logic App --------------------------------------------------------------------------------


def test_logic_app_is_optional() -> None:
    assert _param_default(MAIN, "deployLogicApp") is True
    assert condition(_module("logicApp")) == "logicAppEnabled"  # and the network is public (test_private_network)


def test_logic_app_trigger_schema_is_the_message_schema() -> None:
    template = parse(LOGIC)
    loader = template["variables"]["messageSchema"]["value"]["function"]
    assert loader["type"] == "load_json_content"
    schema_path = (INFRA / "modules" / loader["parameters"]["file_path"]).resolve()
    assert schema_path == REPO / "schemas" / "message.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    # Logic Apps evaluates any string that starts with "@" as an expression.
    for _, value in walk(schema):
        assert not (isinstance(value, str) and value.startswith("@")), value
    definition = body(_resource(LOGIC, "workflow"))["properties"]["definition"]
    trigger = definition["triggers"]["manual"]
    assert (trigger["type"], trigger["kind"]) == ("Request", "Http")
    assert trigger["inputs"]["schema"] == "messageSchema"


def test_logic_app_puts_raw_json_on_the_input_queue_with_its_identity() -> None:
    workflow = body(_resource(LOGIC, "workflow"))
    assert workflow["identity"] == {"type": "SystemAssigned"}
    actions = workflow["properties"]["definition"]["actions"]
    put = actions["Fits_a_queue_message"]["actions"]["'Put_a_message_on_a_queue_(V2)'"]
    assert put["type"] == "ApiConnection"
    assert put["inputs"]["method"] == "post"
    # Raw JSON text, not base64 (host.json messageEncoding "none"): the Compose's string() of the body.
    assert put["inputs"]["body"] == "@{outputs(\\'Queue_message\\')}"
    assert actions["Queue_message"]["inputs"].startswith("@{string(")
    assert "base64" not in actions["Queue_message"]["inputs"]
    assert put["inputs"]["path"].endswith("/queues/@{encodeURIComponent(\\'${inputQueueName}\\')}/messages")
    assert put["inputs"]["path"].startswith(
        "/v2/storageAccounts/@{encodeURIComponent(encodeURIComponent(\\'${queueEndpoint}\\'))}"
    )

    connection = body(_resource(LOGIC, "connection"))
    assert connection["properties"]["parameterValueSet"] == {"name": "managedIdentityAuth", "values": {}}
    assert "azurequeues" in render(connection["properties"]["api"]["id"])
    connections = workflow["properties"]["parameters"]["'$connections'"]["value"]["azurequeues"]
    assert connections["connectionProperties"] == {"authentication": {"type": "ManagedServiceIdentity"}}
    assert render(connections["connectionId"]) == "connection.id"


# --- secrets ----------------------------------------------------------------------------------

SECRET_MARKERS = (
    "listkeys",
    "listcallbackurl",
    "listsecrets",
    "listaccountsas",
    "listservicesas",
    "accountkey",
    "sharedaccesssignature",
    "connectionstring",
    "instrumentationkey",
    "primarykey",
    "secondarykey",
    "sig=",
)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_output_carries_a_secret(path: Path) -> None:
    relative = str(path.relative_to(INFRA))
    for name, output in parse(relative).get("outputs", {}).items():
        assert not re.search(r"(?i)key|secret|password|connection.?string|token|\bsas\b", name), name
        rendered = json.dumps(output["value"]).lower()
        for marker in SECRET_MARKERS:
            assert marker not in rendered, f"{relative}: output {name} contains {marker}"
        assert not any(d["type"] == "secure" for d in output["decorators"]), name


def test_no_key_is_ever_read() -> None:
    for path in INFRA.rglob("*"):
        if path.is_file():
            source = path.read_text(encoding="utf-8").lower()
            for marker in ("listkeys", "listcallbackurl(", "accountkey=", "sharedaccesskey="):
                assert marker not in source, f"{path.relative_to(REPO)} contains {marker}"


# --- parameters file, checkov skips -----------------------------------------------------------


def test_bicepparam_sets_only_declared_parameters() -> None:
    source = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert re.search(r"^using '\./main\.bicep'$", source, re.M)
    declared = set(parse(MAIN)["parameters"])
    set_here = re.findall(r"^param (\w+) =", source, re.M)
    assert set_here, "no parameters set"
    assert set(set_here) <= declared, set(set_here) - declared
    # Defaults in the parameters file agree with the template's.
    from_environment = r"^param (\w+) = (?:int\(|bool\()?readEnvironmentVariable\('\w+', '([^']*)'\)"
    for name, default in re.findall(from_environment, source, re.M):
        template_default = _param_default(MAIN, name)
        if name == "environmentName":  # required in the template; azd always sets it
            continue
        assert str(template_default).lower() == default.lower(), name
    for name, literal in re.findall(r"^param (\w+) = ('[^']*'|\d+)$", source, re.M):
        assert str(_param_default(MAIN, name)) == literal.strip("'"), name


def test_every_checkov_skip_has_a_reason() -> None:
    skips = []
    for path in bicep_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            if "checkov:skip=" in line:
                match = re.fullmatch(r"\s*//checkov:skip=(CKV2?_AZURE_\d+):(.{20,})", line)
                assert match, f"{path.name}: skip without a check id or a reason: {line.strip()}"
                skips.append(match.group(1))
    assert len(skips) == len(set(skips)), "a check is skipped twice"
    config = (REPO / ".checkov.yaml").read_text(encoding="utf-8")
    skipped_paths = re.findall(r"^\s+- (\S+)$", config, re.M)
    # Only Graph-extension modules (checkov has no check for Microsoft.Graph resources and cannot parse them).
    assert skipped_paths == ["infra/modules/graph-app-role.bicep", "infra/modules/multitenant-app.bicep"]
    for path in skipped_paths:
        assert (REPO / path).is_file()
        assert "extension microsoftGraphV1" in (REPO / path).read_text(encoding="utf-8")
        assert "Microsoft.Web/" not in (REPO / path).read_text(encoding="utf-8")
