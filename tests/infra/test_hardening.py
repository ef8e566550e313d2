"""Platform hardening read from the templates: no basic publishing credentials, and diagnostic settings
that send the storage services', the function app's and the Logic App's logs to the workspace."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.bicep import Template, body, condition, module, parse, render, resource, resources_of_type

MAIN = "main.bicep"
STORAGE = "modules/storage.bicep"
FUNCTION = "modules/functionapp.bicep"
LOGIC = "modules/logicapp.bicep"
MONITORING = "modules/monitoring.bicep"

DIAGNOSTIC_SETTINGS = "Microsoft.Insights/diagnosticSettings"

# What each service must send: every log category that records who did what (for storage: reads,
# writes and deletes by Entra principal), plus metrics.
EXPECTED_DIAGNOSTICS = {
    (STORAGE, "Microsoft.Storage/storageAccounts/blobServices"): {"StorageRead", "StorageWrite", "StorageDelete"},
    (STORAGE, "Microsoft.Storage/storageAccounts/queueServices"): {"StorageRead", "StorageWrite", "StorageDelete"},
    (FUNCTION, "Microsoft.Web/sites"): {"FunctionAppLogs"},
    (LOGIC, "Microsoft.Logic/workflows"): {"WorkflowRuntime"},
}
MODULE_OF = {STORAGE: "storage", FUNCTION: "functionApp", LOGIC: "logicApp"}


def _resolve(template: Template, value: Any) -> Any:
    """A variable reference replaced by the variable's value."""
    if isinstance(value, str) and value in template.get("variables", {}):
        return template["variables"][value]["value"]
    return value


def _diagnostic_settings(relative: str) -> dict[str, dict[str, Any]]:
    """Scope resource type -> the diagnostic setting's properties, for one template."""
    template = parse(relative)
    found: dict[str, dict[str, Any]] = {}
    for symbol, setting in resources_of_type(template, DIAGNOSTIC_SETTINGS).items():
        assert condition(setting) is None, f"{relative}: {symbol} must not be conditional"
        config = body(setting)
        scope_type = template["resources"][config["scope"]]["type"]
        assert scope_type not in found, f"{relative}: two diagnostic settings on {scope_type}"
        found[scope_type] = config["properties"]
    return found


def test_basic_publishing_credentials_are_off() -> None:
    policies = resources_of_type(parse(FUNCTION), "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    by_name = {body(policy)["name"]: policy for policy in policies.values()}
    assert set(by_name) == {"scm", "ftp"}
    for name, policy in by_name.items():
        assert condition(policy) is None, name
        assert body(policy)["parent"] == "site", name
        assert body(policy)["properties"] == {"allow": False}, name


@pytest.mark.parametrize(("relative", "scope_type"), sorted(EXPECTED_DIAGNOSTICS), ids=lambda v: v.split("/")[-1])
def test_diagnostic_settings_send_logs_and_metrics_to_the_workspace(relative: str, scope_type: str) -> None:
    template = parse(relative)
    settings = _diagnostic_settings(relative)
    assert scope_type in settings, f"no diagnostic setting on {scope_type} in {relative}"
    props = settings[scope_type]
    assert props["workspaceId"] == "logAnalyticsWorkspaceId"
    logs = _resolve(template, props["logs"])
    assert {entry["category"] for entry in logs} == EXPECTED_DIAGNOSTICS[relative, scope_type]
    metrics = _resolve(template, props["metrics"])
    assert metrics, f"{scope_type}: no metrics"
    assert all(entry["enabled"] is True for entry in [*logs, *metrics])
    # The workspace is the one monitoring.bicep creates.
    passed = body(module(MODULE_OF[relative]))["params"]["logAnalyticsWorkspaceId"]
    assert render(passed) == "monitoring.outputs.logAnalyticsWorkspaceId"
    assert render(parse(MONITORING)["outputs"]["logAnalyticsWorkspaceId"]["value"]) == "workspace.id"


def test_no_other_diagnostic_setting() -> None:
    found = {(relative, scope_type) for relative in MODULE_OF for scope_type in _diagnostic_settings(relative)}
    assert found == set(EXPECTED_DIAGNOSTICS)
    assert resource(STORAGE, "blobService")["type"] == "Microsoft.Storage/storageAccounts/blobServices"
