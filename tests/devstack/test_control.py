"""`python -m devstack` bookkeeping: it signals only processes it started, and refuses a taken port up front."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from devstack.control import BackgroundStack, Part, main

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process of our own in its own group, standing in for a part."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def record(root: Path, part: Part) -> BackgroundStack:
    root.mkdir(parents=True, exist_ok=True)
    (root / "state.json").write_text(json.dumps({"parts": {part.name: asdict(part)}, "settings": {}}))
    return BackgroundStack(root, say=lambda _: None)


def started(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()[19]


def test_down_stops_the_recorded_process(tmp_path: Path, sleeper: subprocess.Popen[bytes]):
    part = Part("graph", sleeper.pid, started(sleeper.pid), "http://127.0.0.1:1/beta", str(tmp_path / "graph.log"))
    stack = record(tmp_path / "state", part)
    assert stack.down() == ["graph"]
    assert sleeper.wait(timeout=10) != 0  # ended by a signal
    assert not (tmp_path / "state" / "state.json").exists()


def test_down_leaves_a_process_alone_that_only_shares_the_pid(tmp_path: Path, sleeper: subprocess.Popen[bytes]):
    part = Part("graph", sleeper.pid, "1", "http://127.0.0.1:1/beta", str(tmp_path / "graph.log"))  # another start
    assert not part.alive()
    assert part.reused()
    stack = record(tmp_path / "state", part)
    assert stack.down() == []
    time.sleep(0.2)
    assert sleeper.poll() is None  # still running: it is not ours


def test_a_zombie_is_not_running(tmp_path: Path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    part = Part("runner", child.pid, started(child.pid), "queue x", str(tmp_path / "runner.log"))
    assert not part.alive()
    child.wait()
    assert not part.alive()  # reaped: gone


def test_up_refuses_a_taken_azurite_port_before_starting_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--state-dir", str(tmp_path / "state"), "up", "--azurite-port", str(port)])
    assert code == 1
    assert f"127.0.0.1:{port} is taken" in capsys.readouterr().err
    assert not (tmp_path / "state" / "state.json").exists()
    assert list((tmp_path / "state").glob("*.pid")) == []


def test_status_of_nothing_is_not_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["--state-dir", str(tmp_path / "none"), "status"]) == 1
    assert capsys.readouterr().out.startswith("not up")
    assert main(["--state-dir", str(tmp_path / "none"), "down"]) == 0
    assert capsys.readouterr().out == "nothing was running\n"


def test_up_with_several_instances_records_one_runner_part_each(tmp_path: Path):
    """`up --instances 3` starts runner, runner-2 and runner-3; down and status see every one of them."""
    from devstack.control import _part_names, _runner_names

    assert _runner_names(3) == ["runner", "runner-2", "runner-3"]
    recorded = dict.fromkeys(("azurite", "runner", "runner-10", "runner-2"))
    assert _part_names(recorded)[-2:] == ["runner-2", "runner-10"]


def test_the_stack_s_settings_for_n_instances_are_the_template_s():
    """One budget for the deployment, the split for N without the table, a thread per invocation the host starts."""
    from devstack.stack import deployed_settings

    four = deployed_settings(4, write_limit=100, window_s=20.0, reserve=10, multitenant=True)
    assert four["GRAPH_WRITE_BUDGET"] == "89"
    assert four["GRAPH_PACING_MAX_INSTANCES"] == "4"
    assert four["PYTHON_THREADPOOL_THREAD_COUNT"] == "24"
    assert deployed_settings(1)["PYTHON_THREADPOOL_THREAD_COUNT"] == "12"
