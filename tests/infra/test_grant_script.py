"""infra/scripts/grant-graph-app-role.sh against a fake `az`: the Graph calls it makes, and when."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.infra.bicep import INFRA

SCRIPT = INFRA / "scripts" / "grant-graph-app-role.sh"
MI_PRINCIPAL = "11111111-1111-1111-1111-111111111111"
GRAPH_SP = "22222222-2222-2222-2222-222222222222"
APP_ROLE = "33333333-3333-3333-3333-333333333333"
NEW_ASSIGNMENT = "44444444-4444-4444-4444-444444444444"

# Answers the few `az` commands the script runs, the way `--output tsv --query ...` would, and logs
# every call as one JSON line.
FAKE_AZ = """\
import json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_AZ_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")

def option(name):
    return args[args.index(name) + 1] if name in args else ""

if args[:2] == ["cloud", "show"]:
    print("https://graph.microsoft.com/")
elif args[:2] == ["identity", "show"]:
    print("MI_PRINCIPAL")
elif args[:2] == ["identity", "list"]:
    # --query "[?tags.application=='certstate'].[principalId, name, tags.\"azd-env-name\"]" as tsv rows
    print(os.environ["FAKE_AZ_IDENTITIES"], end="")
elif args[:1] == ["rest"]:
    url, method = option("--url"), option("--method")
    if method == "post":
        print("NEW_ASSIGNMENT")
    elif "servicePrincipals(appId=" in url:
        print("GRAPH_SP")
    elif url.endswith("?$select=appRoles"):
        print("APP_ROLE" if "'DeviceManagementConfiguration.ReadWrite.All'" in option("--query") else "")
    elif url.endswith("/appRoleAssignments"):
        print(os.environ.get("FAKE_AZ_EXISTING", ""))
    else:
        sys.exit("unexpected url " + url)
else:
    sys.exit("unexpected az call " + " ".join(args))
"""
for _placeholder, _value in {
    "MI_PRINCIPAL": MI_PRINCIPAL,
    "GRAPH_SP": GRAPH_SP,
    "APP_ROLE": APP_ROLE,
    "NEW_ASSIGNMENT": NEW_ASSIGNMENT,
}.items():
    FAKE_AZ = FAKE_AZ.replace(f'print("{_placeholder}"', f'print("{_value}"')


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]

    def rest_calls(self) -> list[list[str]]:
        return [call for call in self.calls if call[:1] == ["rest"]]

    def posts(self) -> list[list[str]]:
        return [call for call in self.rest_calls() if _option(call, "--method") == "post"]


OTHER_PRINCIPAL = "55555555-5555-5555-5555-555555555555"
ONE_IDENTITY = f"{MI_PRINCIPAL}\tid-certstate-abc\tcertstate\n"


class RunScript(Protocol):
    def __call__(self, *args: str, existing: str = "", identities: str = ONE_IDENTITY) -> Run: ...


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1] if name in call else ""


@pytest.fixture
def run_script(tmp_path: Path) -> RunScript:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "az"
    fake.write_text(f"#!{sys.executable}\n{FAKE_AZ}", encoding="utf-8")
    fake.chmod(0o755)
    log = tmp_path / "az.log"

    def run(*args: str, existing: str = "", identities: str = ONE_IDENTITY) -> Run:
        log.write_text("", encoding="utf-8")
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AZ_LOG": str(log),
            "FAKE_AZ_EXISTING": existing,
            "FAKE_AZ_IDENTITIES": identities,
        }
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
        return Run(done.returncode, done.stdout, done.stderr, calls)

    return run


def test_grants_the_role_when_missing(run_script: RunScript) -> None:
    result = run_script("--resource-group", "rg-certstate")
    assert result.returncode == 0, result.stderr
    assert "Granted DeviceManagementConfiguration.ReadWrite.All" in result.stdout
    assert result.calls[0][:4] == ["identity", "list", "--resource-group", "rg-certstate"]
    [post] = result.posts()
    assert _option(post, "--url") == f"https://graph.microsoft.com/v1.0/servicePrincipals/{GRAPH_SP}/appRoleAssignedTo"
    assert json.loads(_option(post, "--body")) == {
        "principalId": MI_PRINCIPAL,
        "resourceId": GRAPH_SP,
        "appRoleId": APP_ROLE,
    }
    for call in result.rest_calls():
        assert _option(call, "--resource") == "https://graph.microsoft.com"


def test_leaves_an_existing_assignment_alone(run_script: RunScript) -> None:
    result = run_script("--principal-id", MI_PRINCIPAL, existing="existing-assignment-id")
    assert result.returncode == 0, result.stderr
    assert "Already granted" in result.stdout
    assert not result.posts()
    assert not [call for call in result.calls if call[:1] == ["identity"]]


def test_dry_run_changes_nothing(run_script: RunScript) -> None:
    result = run_script("--principal-id", MI_PRINCIPAL, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Dry run" in result.stdout
    assert APP_ROLE in result.stdout
    assert not result.posts()


def test_national_cloud_endpoint(run_script: RunScript) -> None:
    result = run_script("--principal-id", MI_PRINCIPAL, "--graph-endpoint", "https://dod-graph.microsoft.us/")
    assert result.returncode == 0, result.stderr
    assert not [call for call in result.calls if call[:1] == ["cloud"]]
    for call in result.rest_calls():
        assert _option(call, "--url").startswith("https://dod-graph.microsoft.us/v1.0/")
        assert _option(call, "--resource") == "https://dod-graph.microsoft.us"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--principal-id", "not-a-guid"), "no managed identity principal id"),
        ((), "give --principal-id"),
        (("--principal-id", MI_PRINCIPAL, "--role", "Bad Role; rm -rf /"), "--role must look like"),
        (("--principal-id", MI_PRINCIPAL, "--graph-endpoint", "http://graph.example"), "unexpected Graph endpoint"),
        (("--frobnicate",), "unknown argument"),
    ],
)
def test_refuses_bad_input_before_calling_graph(run_script: RunScript, args: tuple[str, ...], message: str) -> None:
    result = run_script(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert not result.rest_calls()


def test_refuses_to_guess_between_several_identities(run_script: RunScript) -> None:
    """Two azd environments in one resource group: two tagged identities, and no grant to either."""
    identities = ONE_IDENTITY + f"{OTHER_PRINCIPAL}\tid-certstate-def\tcertstate-test\n"
    result = run_script("--resource-group", "rg-certstate", identities=identities)
    assert result.returncode != 0
    assert "2 certstate identities in resource group rg-certstate" in result.stderr
    for candidate in (MI_PRINCIPAL, "id-certstate-abc", "(certstate)", OTHER_PRINCIPAL, "id-certstate-def"):
        assert candidate in result.stderr
    assert "--principal-id <principal id>" in result.stderr
    assert not result.rest_calls()


def test_an_exact_principal_id_resolves_the_ambiguity(run_script: RunScript) -> None:
    identities = ONE_IDENTITY + f"{OTHER_PRINCIPAL}\tid-certstate-def\tcertstate-test\n"
    result = run_script("--principal-id", OTHER_PRINCIPAL, identities=identities)
    assert result.returncode == 0, result.stderr
    assert not [call for call in result.calls if call[:1] == ["identity"]]
    [post] = result.posts()
    assert json.loads(_option(post, "--body"))["principalId"] == OTHER_PRINCIPAL


def test_an_identity_name_resolves_the_ambiguity(run_script: RunScript) -> None:
    result = run_script("--resource-group", "rg-certstate", "--identity-name", "id-certstate-abc")
    assert result.returncode == 0, result.stderr
    assert [call[:2] for call in result.calls if call[:1] == ["identity"]] == [["identity", "show"]]
    [post] = result.posts()
    assert json.loads(_option(post, "--body"))["principalId"] == MI_PRINCIPAL


def test_no_tagged_identity_is_reported(run_script: RunScript) -> None:
    result = run_script("--resource-group", "rg-empty", identities="")
    assert result.returncode != 0
    assert "no identity tagged application=certstate in resource group rg-empty" in result.stderr
    assert not result.rest_calls()


def test_unknown_role_is_reported(run_script: RunScript) -> None:
    result = run_script("--principal-id", MI_PRINCIPAL, "--role", "Some.Other.Role")
    assert result.returncode != 0
    assert "no application permission named Some.Other.Role" in result.stderr
    assert not result.posts()
