"""`devstack up`, a send, a results read and `down`, from a clean copy of the tree; nothing is left running."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.azurite import REPO_ROOT, port_answers
from devstack.control import Part
from devstack.stack import StackSpec
from shared.contract.limits import DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE

pytestmark = pytest.mark.e2e
CLEAN_ENV = ("CERTSTATE_CONNECTION_STRING", "AzureWebJobsStorage", "INPUT_QUEUE_NAME", "RESULT_QUEUE_NAME")


def clean_copy(destination: Path) -> Path:
    """The files git would hand a fresh clone (tracked, plus new ones not ignored), and the npm-installed Azurite."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    (destination / "node_modules").symlink_to(REPO_ROOT / "node_modules")  # what `npm ci` would install
    return destination


def run(tree: Path, env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def processes_in(tree: Path) -> list[int]:
    """Pids whose working directory is inside `tree` (every part runs from the checkout)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(tree):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads /proc to prove nothing is left running")
def test_up_send_results_down_from_a_clean_copy(tmp_path: Path):
    tree = clean_copy(tmp_path / "certstate")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV and not k.startswith("CERTSTATE_DEVSTACK")}
    up = run(tree, env, "devstack", "up", "--azurite-port", "0")  # 10001 may be someone else's on this machine
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "certstate devstack is up:" in up.stdout
        state = json.loads((tree / ".devstack" / "state.json").read_text())
        parts = [Part(**p) for p in state["parts"].values()]
        assert [p.name for p in parts] == ["azurite", "tables", "identity", "graph", "runner"]
        assert all(p.alive() for p in parts)
        for part in parts:  # where each listens and logs is printed
            assert part.listens in up.stdout
            assert Path(part.log).is_file()
        func_settings = json.loads((tree / "local.settings.json").read_text())["Values"]
        assert func_settings["GRAPH_BASE_URL"] == state["parts"]["graph"]["listens"]
        assert func_settings["FUNCTIONS_WORKER_RUNTIME"] == "python"  # from local.settings.sample.json
        described = StackSpec().app_settings(  # the one description the demo and the tests start from too
            storage=func_settings["AzureWebJobsStorage"],
            input_queue=DEFAULT_INPUT_QUEUE,
            result_queue=DEFAULT_RESULT_QUEUE,
            graph_base_url=state["parts"]["graph"]["listens"],
            identity={name: func_settings[name] for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")},
        )
        assert func_settings == described

        exports = (tree / ".devstack" / "cli.env").read_text().splitlines()
        cli_env = dict(env)
        for line in exports:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                cli_env[name] = value.strip("'")
        sent = run(tree, cli_env, "producer.cli", "send", "examples/batch.jsonl")
        assert sent.returncode == 0, sent.stderr
        outcomes: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while len(outcomes) < 7 and time.monotonic() < deadline:
            time.sleep(0.5)
            read = run(tree, cli_env, "producer.cli", "results", "--json")
            assert read.returncode == 0, read.stderr
            outcomes = [json.loads(line) for line in read.stdout.splitlines()]
        assert sorted(str(o["correlationId"]) for o in outcomes) == [f"seed-route-{i}" for i in range(1, 8)]
        assert {o["status"] for o in outcomes} == {"succeeded"}
        history = run(tree, cli_env, "producer.cli", "history", "--correlation-id", "seed-route-1", "--json")
        assert history.returncode == 0, history.stderr  # the audit trail is on the stack's table service
        assert [json.loads(line)["status"] for line in history.stdout.splitlines()] == ["succeeded"]
    finally:
        down = run(tree, env, "devstack", "down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "stopped azurite, tables, identity, graph, runner"
    assert not any(p.alive() for p in parts)
    assert processes_in(tree) == []
    assert not port_answers(int(state["parts"]["azurite"]["listens"].rsplit(":", 1)[1]))
    assert not (tree / "local.settings.json").exists()  # up wrote it, down took it back
    status = run(tree, env, "devstack", "status")
    assert status.returncode == 1
    assert status.stdout.startswith("not up")
