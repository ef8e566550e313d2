"""`python -m devstack up|down|status`: the whole local stack in the background, for as long as you want it.

`up` starts Azurite's queue service, the managed-identity emulator and the Graph simulator (sharing a
fresh signing key) and the local runner over `function_app.py`, as `devstack.stack.StackSpec` describes
them (the parts and app settings the demo and the tests use too), each as its own background process in
its own process group, logging to a file; it creates the two queues, writes the settings the CLI and
`func start` need, prints where each part listens and logs, and returns. Everything stays up until
`down`, which stops exactly the processes `up` recorded (pid files, checked against each process's
start time, so a reused pid is never signalled) and nothing else.

Where things go, under the state folder (`.devstack/` in the checkout, git-ignored; `--state-dir` or
`$CERTSTATE_DEVSTACK_DIR` to move it):
  state.json             what runs: pid, process start time, where it listens, its log
  <part>.pid             the pid of each part, for scripts and `kill`
  logs/<part>.log        each part's output
  azurite/               Azurite's data, kept across down/up (`down --wipe` deletes the folder)
  local.settings.json    the app settings of this stack, as `func start` reads them; also copied to
                         ./local.settings.json when there is none (and removed by `down` if unchanged)
  cli.env                `source` it when Azurite is not on 127.0.0.1:10001: the CLI's target and queues

With Azurite on its usual port 10001 and the app's default queue names, `certstate send` and
`certstate results` reach the stack with no option at all. `--no-runner` leaves the function host to
you (`func start` reads ./local.settings.json).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from devstack.azurite import AzuriteNotInstalledError, connection_string, default_binary, port_answers, service_command
from devstack.azurite import queue_service_command as azurite_command
from devstack.stack import StackSpec, create_queues, runner_command
from shared.contract.limits import DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE, queue_name_problem

REPO: Final = Path(__file__).resolve().parent.parent
STATE_VARIABLE: Final = "CERTSTATE_DEVSTACK_DIR"
DEFAULT_AZURITE_PORT: Final = 10001
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = {"runner": 40.0}  # the runner lets running invocations finish (its --stop-timeout 30)
PARTS: Final = ("azurite", "tables", "identity", "graph", "runner")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1


class StackError(RuntimeError):
    """A part did not start, or the stack cannot be started as asked."""


@dataclass(frozen=True)
class Part:
    """One background process of the stack, as recorded in state.json."""

    name: str
    pid: int
    started: str | None  # the kernel's start time of that pid (Linux), so a reused pid is not mistaken for it
    listens: str
    log: str

    def reused(self) -> bool:
        """Whether the pid now belongs to a process started after ours (Linux only; elsewhere never known)."""
        state = _proc_stat(self.pid)
        return state is not None and self.started is not None and state[1] != self.started

    def alive(self) -> bool:
        """Whether this very process still runs (not a zombie, not another process with the same pid)."""
        state = _proc_stat(self.pid)
        if state is None:
            return _exists(self.pid)
        return state[0] != "Z" and (self.started is None or state[1] == self.started)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) from /proc/<pid>/stat; None where /proc is not there or the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], fields[19]


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def state_dir(explicit: Path | None = None) -> Path:
    """Where the stack keeps its state: the option, else $CERTSTATE_DEVSTACK_DIR, else .devstack/ in the checkout."""
    if explicit is not None:
        return explicit.resolve()
    configured = os.environ.get(STATE_VARIABLE)
    return Path(configured).resolve() if configured else REPO / ".devstack"


class BackgroundStack:
    """The state folder of one background stack, and the operations on it."""

    def __init__(self, root: Path, say: Callable[[str], None] = print) -> None:
        self.root = root
        self.say = say
        self.logs = root / "logs"
        self.state_file = root / "state.json"

    # -- state -----------------------------------------------------------------------------------------

    def load(self) -> dict[str, Any] | None:
        """The recorded state, or None when nothing was started from this folder."""
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state

    def parts(self, state: Mapping[str, Any] | None = None) -> list[Part]:
        """The recorded parts, in start order."""
        recorded = (state if state is not None else self.load()) or {}
        names = recorded.get("parts", {})
        return [Part(**names[name]) for name in _part_names(names) if name in names]

    def _save(self, state: dict[str, Any]) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.state_file)

    # -- up ----------------------------------------------------------------------------------------------

    def up(
        self, *, azurite_port: int, with_runner: bool, input_queue: str, result_queue: str, instances: int = 1
    ) -> dict[str, Any]:
        """Start every part in the background and record it; on any failure stop what was started.

        `instances` runner processes share the queue, each with the app settings infra deploys for
        that many Flex instances (`devstack.stack.StackSpec`).
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {"parts": {}, "settings": {}, "wroteLocalSettings": None}
        try:
            self._start_all(state, azurite_port, with_runner, input_queue, result_queue, instances=instances)
        except BaseException:
            self._stop_parts(self.parts(state))
            self._clear_pid_files()
            raise
        return state

    def _start_all(
        self,
        state: dict[str, Any],
        azurite_port: int,
        with_runner: bool,
        input_queue: str,
        result_queue: str,
        *,
        instances: int = 1,
    ) -> None:
        key = secrets.token_bytes(32).hex()
        port = azurite_port or _free_port()
        if port_answers(port):
            raise StackError(
                f"127.0.0.1:{port} is taken (another Azurite?); stop it, or pass --azurite-port 0 for a free port"
            )
        binary = default_binary()
        if not binary.exists():
            raise AzuriteNotInstalledError(f"{binary} not found: run `npm ci` (or scripts/bootstrap.sh)")
        (self.root / "azurite").mkdir(exist_ok=True)
        table_port = _free_port() if azurite_port == 0 else port + 1  # 10002 beside the usual 10001
        if port_answers(table_port):
            raise StackError(f"127.0.0.1:{table_port} (for Azurite's tables) is taken; pass --azurite-port 0")
        queues = connection_string(port, table_port)  # the table service holds the audit trail
        self._start(state, "azurite", azurite_command(binary, port, self.root / "azurite"), f"http://127.0.0.1:{port}")
        self._wait(state, "azurite", lambda: port_answers(port))
        tables = service_command("table", binary.with_name("azurite-table"), table_port, self.root / "azurite")
        self._start(state, "tables", tables, f"http://127.0.0.1:{table_port}")
        self._wait(state, "tables", lambda: port_answers(table_port))
        self._start(state, "identity", self._python("devstack.identity_emulator", "--signing-key-hex", key), "")
        identity = self._wait_for_lines(state, "identity", ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"))
        spec = StackSpec(instances=instances)  # Graph's 100 writes per 20 s, paced as infra deploys it
        graph_command = self._python("devstack.graph_simulator", "--signing-key-hex", key, *spec.simulator_args())
        self._start(state, "graph", graph_command, "")
        graph = self._wait_for_lines(state, "graph", ("GRAPH_BASE_URL",))
        state["parts"]["identity"]["listens"] = identity["IDENTITY_ENDPOINT"]
        state["parts"]["graph"]["listens"] = graph["GRAPH_BASE_URL"]
        settings = spec.app_settings(
            storage=queues,
            input_queue=input_queue,
            result_queue=result_queue,
            graph_base_url=graph["GRAPH_BASE_URL"],
            identity=identity,
        )
        state["settings"] = settings
        state["wroteLocalSettings"] = self._write_settings(settings)
        create_queues(queues, input_queue, result_queue)
        if with_runner:
            argv = runner_command("--settings", str(self.root / "local.settings.json"))
            for name in _runner_names(instances):
                self._start(state, name, argv, f"queue {input_queue}", env=settings)
                self._wait(state, name, functools.partial(self._says_up, name))
        self._save(state)

    def _says_up(self, name: str) -> bool:
        return "Runner up" in self._log_text(name)

    @staticmethod
    def _python(module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def _start(
        self, state: dict[str, Any], name: str, argv: Sequence[str], listens: str, env: Mapping[str, str] | None = None
    ) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and the npm-installed Azurite
                list(argv),
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: down signals it and whatever it spawned
            )
        stat = _proc_stat(process.pid)
        part = Part(name, process.pid, stat[1] if stat else None, listens, str(log))
        state["parts"][name] = asdict(part)
        (self.root / f"{name}.pid").write_text(f"{process.pid}\n", encoding="utf-8")
        self._save(state)  # recorded at once: a failure from here on still stops it

    def _log_text(self, name: str) -> str:
        try:
            return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _wait(self, state: dict[str, Any], name: str, ready: Callable[[], bool]) -> None:
        part = Part(**state["parts"][name])
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if not part.alive():
                raise StackError(
                    f"{name} exited while starting; the end of {part.log}:\n{self._log_text(name)[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"{name} did not get ready within {START_TIMEOUT_S:.0f} s; see {part.log}")
            time.sleep(0.1)

    def _wait_for_lines(self, state: dict[str, Any], name: str, keys: Sequence[str]) -> dict[str, str]:
        """The `KEY=value` lines an emulator prints once it listens."""
        found: dict[str, str] = {}

        def ready() -> bool:
            for line in self._log_text(name).splitlines():
                key, _, value = line.partition("=")
                if key in keys:
                    found[key] = value.strip()
            return all(k in found for k in keys)

        self._wait(state, name, ready)
        return found

    def _write_settings(self, settings: Mapping[str, str]) -> bool:
        """Write local.settings.json (and cli.env) here; copy it to the checkout unless one is there already."""
        text = json.dumps({"IsEncrypted": False, "Values": dict(settings)}, indent=2) + "\n"
        (self.root / "local.settings.json").write_text(text, encoding="utf-8")
        cli = {name: settings[name] for name in ("INPUT_QUEUE_NAME", "RESULT_QUEUE_NAME")}
        cli["CERTSTATE_CONNECTION_STRING"] = settings["AzureWebJobsStorage"]
        (self.root / "cli.env").write_text(
            "# The certstate CLI's target for this devstack: `source` this file (bash, zsh).\n"
            + "".join(f"export {name}='{value}'\n" for name, value in sorted(cli.items())),
            encoding="utf-8",
        )
        checkout = REPO / "local.settings.json"
        if checkout.exists():
            return False
        checkout.write_text(text, encoding="utf-8")
        return True

    # -- down --------------------------------------------------------------------------------------------

    def down(self, *, wipe: bool = False) -> list[str]:
        """Stop the recorded parts, newest first; the names of those that were still running."""
        state = self.load()
        parts = self.parts(state)
        running = [p.name for p in parts if p.alive()]
        self._stop_parts(parts)
        self._clear_pid_files()
        if state is not None and state.get("wroteLocalSettings"):
            _remove_if_same(REPO / "local.settings.json", self.root / "local.settings.json")
        self.state_file.unlink(missing_ok=True)
        if wipe:
            shutil.rmtree(self.root, ignore_errors=True)
        return running

    def _stop_parts(self, parts: Sequence[Part]) -> None:
        for part in reversed(parts):
            if part.reused():
                continue  # that pid is someone else's now: ours ended long ago
            if part.alive():
                _signal_group(part.pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT_S.get(part.name.partition("-")[0], 10.0)
                while part.alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
            # The leader if it would not go, or what it left behind: a pid is never reused while its group lives.
            _signal_group(part.pid, signal.SIGKILL)

    def _clear_pid_files(self) -> None:
        for name in _part_names({path.stem: None for path in self.root.glob("runner-*.pid")}):
            (self.root / f"{name}.pid").unlink(missing_ok=True)


def _runner_names(instances: int) -> list[str]:
    """`runner`, then `runner-2` ... `runner-N`: one part per instance."""
    return ["runner", *(f"runner-{i}" for i in range(2, instances + 1))]


def _part_names(recorded: Mapping[str, Any]) -> list[str]:
    """Every part name in start order: the fixed parts, then any further runners that were recorded."""
    extra = sorted((n for n in recorded if n.startswith("runner-")), key=lambda n: int(n.rpartition("-")[2]))
    return [*PARTS, *extra]


def _remove_if_same(copy: Path, original: Path) -> None:
    """Delete `copy` if it still says what `original` says (a file someone edited is theirs now)."""
    try:
        if copy.read_bytes() == original.read_bytes():
            copy.unlink()
    except OSError:
        pass


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _free_port() -> int:
    import socket  # noqa: PLC0415 - only for --azurite-port 0

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- command line ----------------------------------------------------------------------------------------


def _table(stack: BackgroundStack, parts: Sequence[Part]) -> list[str]:
    lines = [f"  {'PART':<9} {'STATE':<8} {'PID':>7}  {'LISTENS':<52} LOG"]
    for part in parts:
        where = os.path.relpath(part.log, Path.cwd()) if Path(part.log).is_relative_to(Path.cwd()) else part.log
        state = "running" if part.alive() else "stopped"
        lines.append(f"  {part.name:<9} {state:<8} {part.pid:>7}  {part.listens:<52} {where}")
    return lines


def _report_up(stack: BackgroundStack, state: Mapping[str, Any]) -> None:
    say = stack.say
    settings = state["settings"]
    say("certstate devstack is up:")
    for line in _table(stack, stack.parts(state)):
        say(line)
    say(f"  settings  {stack.root / 'local.settings.json'} (app settings; `func start` users: see below)")
    if state.get("wroteLocalSettings"):
        say("            copied to ./local.settings.json, which `down` removes again if you leave it unchanged")
    else:
        say("            ./local.settings.json exists and was left alone; copy the devstack one over it for func start")
    default_target = settings["AzureWebJobsStorage"] == connection_string(DEFAULT_AZURITE_PORT) and (
        settings["INPUT_QUEUE_NAME"],
        settings["RESULT_QUEUE_NAME"],
    ) == (DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE)
    say("try:")
    if not default_target:
        say(f"  source {stack.root / 'cli.env'}     # the CLI's target: this Azurite and these queues")
    say("  certstate send examples/batch.jsonl")
    say("  certstate results --follow")
    say("stop:  python -m devstack down")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m devstack`."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="exit codes: 0 done (status: everything runs); 1 a part did not start (status: not up); 2 usage",
    )
    parser.add_argument("--state-dir", type=Path, help=f"state folder (default: ${STATE_VARIABLE}, else ./.devstack)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    up = commands.add_parser("up", help="start the whole local stack in the background")
    up.add_argument(
        "--azurite-port",
        type=int,
        default=DEFAULT_AZURITE_PORT,
        help="Azurite's queue port (default 10001, where the CLI looks by default; 0: a free one)",
    )
    up.add_argument("--no-runner", action="store_true", help="no local runner: you run `func start` yourself")
    up.add_argument(
        "--instances",
        type=int,
        default=1,
        help="runner processes on the queue, each with the app settings infra deploys for that many instances",
    )
    up.add_argument("--input-queue", default=DEFAULT_INPUT_QUEUE, help=f"default {DEFAULT_INPUT_QUEUE}")
    up.add_argument("--result-queue", default=DEFAULT_RESULT_QUEUE, help=f"default {DEFAULT_RESULT_QUEUE}")
    down = commands.add_parser("down", help="stop what `up` started, and nothing else")
    down.add_argument("--wipe", action="store_true", help="also delete the state folder (Azurite's data, logs)")
    status = commands.add_parser("status", help="what runs, where it listens, where it logs")
    status.add_argument("--json", action="store_true", help="print state.json, each part with `running`")
    args = parser.parse_args(argv)
    stack = BackgroundStack(state_dir(args.state_dir), say=lambda text: print(text, flush=True))
    if args.command == "up":
        for name in (args.input_queue, args.result_queue):
            if problem := queue_name_problem(name):
                parser.error(problem)
        return _up(stack, args)
    if args.command == "down":
        running = stack.down(wipe=args.wipe)
        stack.say(f"stopped {', '.join(running)}" if running else "nothing was running")
        return EXIT_OK
    return _status(stack, as_json=args.json)


def _up(stack: BackgroundStack, args: argparse.Namespace) -> int:
    parts = stack.parts()
    if parts and all(p.alive() for p in parts):
        stack.say("already up (python -m devstack down stops it):")
        for line in _table(stack, parts):
            stack.say(line)
        return EXIT_OK
    if parts:
        stack.say(f"a previous stack is partly down ({', '.join(p.name for p in parts if not p.alive())}): restarting")
        stack.down()
    stack.say(
        "starting Azurite, the identity emulator, the Graph simulator"
        + ("" if args.no_runner else " and the runner")
        + " ..."
    )
    try:
        state = stack.up(
            azurite_port=args.azurite_port,
            with_runner=not args.no_runner,
            input_queue=args.input_queue,
            result_queue=args.result_queue,
            instances=max(1, args.instances),
        )
    except (StackError, AzuriteNotInstalledError) as error:
        print(f"devstack up: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("devstack up: interrupted; everything it had started is stopped", file=sys.stderr)
        return 130
    _report_up(stack, state)
    return EXIT_OK


def _status(stack: BackgroundStack, *, as_json: bool) -> int:
    state = stack.load()
    parts = stack.parts(state)
    up = bool(parts) and all(p.alive() for p in parts)
    if as_json:
        report = state or {"parts": {}}
        for part in parts:
            report["parts"][part.name]["running"] = part.alive()
        print(json.dumps({**report, "up": up}, indent=2))
    elif not parts:
        print(f"not up (nothing recorded in {stack.root}); python -m devstack up starts it")
    else:
        print("certstate devstack " + ("is up:" if up else "is partly down (python -m devstack up restarts it):"))
        for line in _table(stack, parts):
            print(line)
    return EXIT_OK if up else EXIT_FAILED
