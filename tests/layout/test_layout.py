"""The repository's layout promises: what is deployed, what it imports, and who depends on whom."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOYED_ROOTS = ("function_app.py", "host.json", "requirements.txt", "shared/")
# import name -> the requirements.txt distribution that provides it
RUNTIME_IMPORTS = {
    "azure.data.tables": "azure-data-tables",
    "azure.functions": "azure-functions",
    "azure.identity": "azure-identity",
    "azure.core": "azure-identity",  # azure-core comes with azure-identity and is what it raises
    "azure.storage.queue": "azure-storage-queue",
    "azure.monitor.opentelemetry.exporter": "azure-monitor-opentelemetry-exporter",
    "opentelemetry": "opentelemetry-api",
    "opentelemetry.sdk": "opentelemetry-sdk",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "requests": "requests",
    "urllib3": "urllib3",  # pinned itself: shared/graph/transport.py watches its connections (URLLIB3_TESTED)
}


def _tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if (REPO / line).exists()]


def deployed_files() -> list[str]:
    """The files `func azure functionapp publish` / azd upload: everything .funcignore leaves."""
    spec = pathspec.GitIgnoreSpec.from_lines((REPO / ".funcignore").read_text().splitlines())
    return [path for path in _tracked_files() if not spec.match_file(path)]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(*roots: str) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        path = REPO / root
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def _third_party(name: str) -> bool:
    top = name.partition(".")[0]
    return top not in sys.stdlib_module_names and top != "shared"


def test_the_deployment_holds_the_function_and_nothing_else():
    files = deployed_files()
    assert "function_app.py" in files
    assert "host.json" in files
    assert any(f.startswith("shared/contract/") for f in files)
    strays = [f for f in files if not f.startswith(DEPLOYED_ROOTS) and f not in DEPLOYED_ROOTS]
    assert strays == [], f".funcignore lets these into the deployment: {strays}"
    for prefix in ("producer/", "devstack/", "tests/", "bench/", "docs/", "infra/", ".github/", ".vscode/"):
        assert not any(f.startswith(prefix) for f in files), prefix


def test_the_deployed_code_imports_only_itself_the_standard_library_and_requirements_txt():
    deployed = [REPO / f for f in deployed_files() if f.endswith(".py")]
    outside = {
        (path.relative_to(REPO).as_posix(), name)
        for path in deployed
        for name in _imports(path)
        if _third_party(name) and not any(name == m or name.startswith(m + ".") for m in RUNTIME_IMPORTS)
    }
    assert outside == set(), "the deployed code imports what requirements.txt does not provide"


def test_requirements_txt_holds_only_what_the_deployed_code_imports():
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    imported = {
        RUNTIME_IMPORTS[module]
        for path in _python_files(*DEPLOYED_ROOTS[:1], "shared")
        for name in _imports(path)
        for module in RUNTIME_IMPORTS
        if name == module or name.startswith(module + ".")
    }
    assert pinned == imported


@pytest.mark.parametrize("other", ["producer", "devstack", "bench", "tests"])
def test_shared_never_imports_the_tooling(other: str):
    offenders = [
        (path.relative_to(REPO).as_posix(), name)
        for path in _python_files("shared", "function_app.py")
        for name in _imports(path)
        if name == other or name.startswith(other + ".")
    ]
    assert offenders == []


def test_producers_depend_on_the_contract_not_on_the_function():
    """The producer side may read the contract (and host.json's encoding), never the pipeline or Graph code."""
    allowed = ("shared.contract", "shared.host_config")
    offenders = [
        (path.relative_to(REPO).as_posix(), name)
        for path in _python_files("producer")
        for name in _imports(path)
        if name.startswith("shared") and not name.startswith(allowed)
    ]
    assert offenders == []


def test_the_checks_above_see_a_violation(tmp_path: Path):
    """The import scan is what the tests rely on: it must find an import of the tooling."""
    sample = tmp_path / "sample.py"
    sample.write_text("import producer.cli\nfrom devstack.runner import Runner\ndef f():\n    import bench\n")
    assert {"producer.cli", "devstack.runner", "bench"} <= _imports(sample)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("shared/contract", ("shared.graph", "shared.pipeline", "shared.wiring", "shared.deferrals", "shared.audit")),
        (
            "shared/graph",
            (
                "shared.pipeline",
                "shared.wiring",
                "shared.deferrals",
                "shared.audit",
                "shared.operations",
                "shared.registry",
            ),
        ),
        # the pipeline's parts: the outcome builder, then the deferral policy, then the pipeline's steps
        ("shared/outcome_builder.py", ("shared.deferral_policy", "shared.pipeline", "shared.wiring", "shared.audit")),
        ("shared/deferral_policy.py", ("shared.pipeline", "shared.wiring", "shared.deferrals", "shared.audit")),
        # the stores the wiring hands the pipeline know the contract, not the pipeline
        ("shared/audit.py", ("shared.pipeline", "shared.deferral_policy", "shared.wiring")),
        ("shared/deferrals.py", ("shared.pipeline", "shared.deferral_policy", "shared.wiring")),
    ],
)
def test_layers_import_only_downwards(layer: str, forbidden: tuple[str, ...]):
    """contract -> graph -> outcome builder -> deferral policy -> pipeline -> wiring: a layer never reaches up."""
    offenders = [
        (path.relative_to(REPO).as_posix(), name)
        for path in _python_files(layer)
        for name in _imports(path)
        if any(name == up or name.startswith(up + ".") for up in forbidden)
    ]
    assert offenders == []


def test_nothing_imports_the_old_tenancy_module():
    """The tenant (credential, token gate, pacer) lives in shared/graph; no module outside it remains."""
    assert not (REPO / "shared" / "tenancy.py").exists()
    offenders = [path for path in _python_files("shared", "function_app.py") if "shared.tenancy" in _imports(path)]
    assert offenders == []


DEV_ONLY_ALLOWED = {
    # The Functions host restarts the worker when app settings change; the local stack and tests change
    # them in-process, so the composition root lets them forget what it built (its caches are private).
    "reset_pipeline": "shared/wiring.py",
}


def _names_used(path: Path) -> set[str]:
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            used.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used.add(node.value)  # a name given as text (__all__, getattr)
    return used


def test_the_deployed_package_holds_no_member_only_tests_or_dev_tooling_use():
    """Every function, class and method `shared/` defines is used by the function app or the product's CLI.

    Decorated members (validators, properties, context managers) and dunders are called by their
    frameworks, not by name, and are left out of the scan.
    """
    product = _python_files("shared", "function_app.py", "producer")
    used = set().union(*(_names_used(path) for path in product))
    unused = {
        node.name: path.relative_to(REPO).as_posix()
        for path in _python_files("shared")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
        and not node.decorator_list
        and not node.name.startswith("__")
        and node.name not in used
    }
    assert unused == DEV_ONLY_ALLOWED
