"""Azurite's queue and table services as child processes, for the local stack and the tests.

The queue service (the function's trigger and outputs) and the table service (its audit trail) are
started, not blob, from the npm-pinned copy in ``node_modules`` (``npm ci`` installs it), bound to
127.0.0.1, with their data in a fresh temporary folder that is deleted on stop. Telemetry is switched
off: this machine reaches nothing but package registries, and a dev tool should not phone home anyway.
Each process runs in its own process group so that :meth:`Azurite.stop` can end it and anything it
spawned, and leave nothing running.

Run ``python -m devstack.azurite [--port 10001] [--table-port 10002]`` to keep one up until Ctrl-C; it
prints the connection string to put in ``local.settings.json``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "Azurite",
    "AzuriteError",
    "AzuriteNotInstalledError",
    "connection_string",
    "default_binary",
    "port_answers",
    "queue_service_command",
    "service_command",
]

ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key: public, documented, and accepted by Azurite only.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]


class AzuriteError(RuntimeError):
    """Azurite could not be started (it exited early or never answered)."""


class AzuriteNotInstalledError(AzuriteError, FileNotFoundError):
    """The npm-installed ``azurite-queue`` (or ``azurite-table`` beside it) binary is missing."""


def default_binary() -> Path:
    """Return where ``npm ci`` put ``azurite-queue``: this checkout, else the working folder or a parent.

    The fallback matters when ``devstack`` runs from an installed copy rather than the checkout.
    """
    relative = Path("node_modules") / ".bin" / "azurite-queue"
    cwd = Path.cwd()
    for root in (REPO_ROOT, cwd, *cwd.parents):
        if (root / relative).exists():
            return root / relative
    return REPO_ROOT / relative


def queue_service_command(binary: Path, port: int, location: Path, *, loose: bool = False) -> list[str]:
    """The ``azurite-queue`` command line: loopback only, data in ``location``, no telemetry."""
    return service_command("queue", binary, port, location, loose=loose)


def service_command(service: str, binary: Path, port: int, location: Path, *, loose: bool = False) -> list[str]:
    """The ``azurite-<service>`` command line (``queue`` or ``table``): loopback only, no telemetry."""
    argv = [
        str(binary),
        f"--{service}Host",
        HOST,
        f"--{service}Port",
        str(port),
        "--location",
        str(location),
        "--silent",
        "--skipApiVersionCheck",
        "--disableTelemetry",
    ]
    return [*argv, "--loose"] if loose else argv


def connection_string(port: int, table_port: int | None = None) -> str:
    """A connection string for Azurite's well-known development account: queues on ``port`` (and tables)."""
    tables = f"TableEndpoint=http://{HOST}:{table_port}/{ACCOUNT_NAME};" if table_port is not None else ""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"{tables}QueueEndpoint=http://{HOST}:{port}/{ACCOUNT_NAME};"
    )


def port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    """Ask the kernel for a free loopback port (another process may still take it before Azurite does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Azurite:
    """Azurite's queue and table services on 127.0.0.1; a context manager that cleans up after itself."""

    def __init__(
        self,
        *,
        port: int | None = None,
        table_port: int | None = None,
        binary: Path | None = None,
        startup_timeout: float = 30.0,
        loose: bool = False,
    ) -> None:
        """Configure, but do not start; a port of ``None`` is picked free at :meth:`start`.

        ``binary`` is ``azurite-queue``; ``azurite-table`` is expected beside it.
        """
        self._requested_ports = {"queue": port, "table": table_port}
        self._binary = binary if binary is not None else default_binary()
        self._startup_timeout = startup_timeout
        self._loose = loose
        self._ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._workdir: Path | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start both services and return once their ports answer.

        Raises :class:`AzuriteNotInstalledError` when a binary is missing and :class:`AzuriteError` when
        a process exits early or does not answer within ``startup_timeout``.
        """
        if self._procs:
            raise AzuriteError("Azurite is already running")
        binaries = {"queue": self._binary, "table": self._binary.with_name("azurite-table")}
        for binary in binaries.values():
            if not binary.exists():
                raise AzuriteNotInstalledError(
                    f"{binary} not found: run `npm ci` in {REPO_ROOT} to install the pinned Azurite"
                )
        workdir = Path(tempfile.mkdtemp(prefix="certstate-azurite-"))
        self._workdir = workdir
        atexit.register(self.stop)
        try:
            for service, binary in binaries.items():
                port = self._requested_ports[service] or _free_port()
                data = workdir / service
                data.mkdir()
                argv = service_command(service, binary, port, data, loose=self._loose)
                with (workdir / f"{service}.log").open("wb") as log:
                    # Own session => own process group, so stop() can signal the whole group.
                    self._procs[service] = subprocess.Popen(  # noqa: S603 - argv is built here from fixed flags
                        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                self._ports[service] = port
            for service, proc in self._procs.items():
                self._wait_until_ready(service, proc, self._ports[service])
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, service: str, proc: subprocess.Popen[bytes], port: int) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AzuriteError(
                    f"azurite-{service} exited with code {proc.returncode} before listening on {HOST}:{port}. "
                    f"Output:\n{self._log_tail(service)}\n(If node_modules is missing or stale, run `npm ci`.)"
                )
            if port_answers(port):
                return
            time.sleep(0.05)
        raise AzuriteError(
            f"azurite-{service} did not answer on {HOST}:{port} within {self._startup_timeout:.0f}s. "
            f"Output:\n{self._log_tail(service)}\n(If node_modules is missing or stale, run `npm ci`.)"
        )

    def _log_tail(self, service: str, limit: int = 4000) -> str:
        if self._workdir is None:
            return ""
        try:
            return (self._workdir / f"{service}.log").read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """End each process group (TERM, then KILL after ``timeout``), wait, delete the data folder.

        Safe to call twice; also registered with :mod:`atexit` so an aborted test run leaves no node process.
        """
        procs, workdir = list(self._procs.values()), self._workdir
        self._procs, self._ports, self._workdir = {}, {}, None
        atexit.unregister(self.stop)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)  # a paused service would not act on TERM
                os.killpg(proc.pid, signal.SIGTERM)  # session leader: its pid is the group id
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
            # The leader is gone; anything it left in the group goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def pause(self) -> None:
        """Freeze the queue service (SIGSTOP to its process group): connections open, nothing answered.

        What a storage stall looks like to a client: requests are accepted and read by the kernel, and
        are served only after :meth:`resume`, even if the client gave up on them meanwhile.
        """
        os.killpg(self._running("queue").pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused queue service run again (SIGCONT); it then serves what it was sent meanwhile."""
        os.killpg(self._running("queue").pid, signal.SIGCONT)

    # -- facts about the running instance ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether both processes are alive."""
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs.values())

    def _running(self, service: str) -> subprocess.Popen[bytes]:
        if service not in self._procs:
            raise AzuriteError("Azurite is not running")
        return self._procs[service]

    @property
    def pid(self) -> int:
        """Process id (and process group id) of the running queue service."""
        return self._running("queue").pid

    @property
    def table_pid(self) -> int:
        """Process id (and process group id) of the running table service."""
        return self._running("table").pid

    @property
    def port(self) -> int:
        """The queue service's port."""
        self._running("queue")
        return self._ports["queue"]

    @property
    def table_port(self) -> int:
        """The table service's port."""
        self._running("table")
        return self._ports["table"]

    @property
    def data_dir(self) -> Path:
        """The temporary folder holding the services' data (deleted on stop)."""
        if self._workdir is None:
            raise AzuriteError("Azurite is not running")
        return self._workdir

    @property
    def queue_endpoint(self) -> str:
        """``http://127.0.0.1:PORT/devstoreaccount1``."""
        return f"http://{HOST}:{self.port}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        """``http://127.0.0.1:TABLE_PORT/devstoreaccount1``."""
        return f"http://{HOST}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """A queue and table connection string with the well-known development account and key."""
        return connection_string(self.port, self.table_port)


def main(argv: list[str] | None = None) -> int:
    """Run Azurite's queue and table services until Ctrl-C or SIGTERM, printing the connection string."""
    parser = argparse.ArgumentParser(prog="python -m devstack.azurite", description=main.__doc__)
    parser.add_argument("--port", type=int, default=10001, help="queue port (default 10001; 0 = any free port)")
    parser.add_argument("--table-port", type=int, default=10002, help="table port (default 10002; 0 = any free port)")
    parser.add_argument("--loose", action="store_true", help="pass --loose to Azurite")
    args = parser.parse_args(argv)

    stopping = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        with Azurite(port=args.port or None, table_port=args.table_port or None, loose=args.loose) as azurite:
            print(
                f"Azurite queues on {azurite.queue_endpoint}, tables on {azurite.table_endpoint} "
                f"(pids {azurite.pid}, {azurite.table_pid}); Ctrl-C stops them."
            )
            print(azurite.connection_string, flush=True)
            while not stopping and azurite.running:
                time.sleep(0.2)
            if not stopping:
                print("Azurite exited unexpectedly", file=sys.stderr)
                return 1
    except AzuriteError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
