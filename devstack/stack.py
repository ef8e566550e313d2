"""The whole local pipeline on real parts: one description (`StackSpec`), and the stack in this process.

Azurite, the managed-identity emulator, the Graph simulator and the local runner driving
`function_app.py`. `StackSpec` says what they are and how they are set up (Graph's write limit, the
function's app settings on those parts); `LocalStack` starts them in this process for the run command
(`devstack.demo`) and the tests, and `python -m devstack up` (devstack/control.py) starts the same
parts, described by the same spec, in the background. With `tenants`, the Entra ID emulator (HTTPS, a
generated CA) joins them, the Graph simulator gets a store per tenant, and the function serves those
tenants through the multi-tenant app, as deployed (docs/devstack.md).

The function reads its app settings from the environment (as under `func start`), so the stack
exports them to `os.environ` while it runs and restores the previous values afterwards. The runner
can run in this process (`start_runner`) or as a separate process (`spawn_runner`) that a test may
kill outright, as a crashed host instance would be.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from devstack.azurite import Azurite
from devstack.entra_emulator import EntraEmulator
from devstack.graph_simulator import CONCURRENT_CLIENT_GRACE_S, GraphSimulator
from devstack.identity_emulator import SYSTEM_ASSIGNED_CLIENT_ID, IdentityEmulator
from devstack.runner import Runner, poison_queue_name
from shared.wiring import reset_pipeline

REPO = Path(__file__).resolve().parent.parent
MULTITENANT_QUEUE_SETTINGS = {
    "AzureFunctionsJobHost__extensions__queues__batchSize": "16",
    "AzureFunctionsJobHost__extensions__queues__newBatchThreshold": "8",
}
"""What infra/main.bicep sets when other tenants are served: twice host.json's queue concurrency."""


def deployed_settings(
    instances: int, *, write_limit: int = 100, window_s: float = 20.0, reserve: int = 0, multitenant: bool = False
) -> dict[str, str]:
    """The pacing and concurrency app settings infra/main.bicep deploys for `instances` Flex instances.

    One runner process per instance with these settings reproduces the deployment's pacing: a
    budget per tenant for all instances together (the limit less the reserve, less one write that
    absorbs send jitter and clock skew), the split each instance falls back to without the table
    (GRAPH_PACING_MAX_INSTANCES), and one worker thread per invocation the host may start.
    """
    threads = 16 + 8 if multitenant else 8 + 4
    return {
        "GRAPH_WRITE_BUDGET": str(max(1, write_limit - reserve - 1)),
        "GRAPH_WRITE_WINDOW_SECONDS": f"{window_s:g}",
        "GRAPH_PACING_MAX_INSTANCES": str(instances),
        "PYTHON_THREADPOOL_THREAD_COUNT": str(threads),
        **(MULTITENANT_QUEUE_SETTINGS if multitenant else {}),
    }


def sample_values() -> dict[str, str]:
    """local.settings.sample.json's Values: the settings a newcomer is shown, the base of every stack's."""
    sample = json.loads((REPO / "local.settings.sample.json").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in (sample.get("Values") or {}).items()}


@dataclass(frozen=True)
class StackSpec:
    """What the local stack is, however it runs: Graph's limits, the instances, the tenants, the overrides.

    The simulator enforces `write_limit` per `write_window_s` (Intune's 100 per 20 s by default), and
    the function is paced for it as infra deploys it (`deployed_settings`): both come from here, so
    they cannot disagree. `tenants`: tenant id -> its Graph write limit (None: `write_limit`), served
    besides the home tenant. `overrides`: app settings that win over everything else.
    """

    write_limit: int = 100
    write_window_s: float = 20.0
    instances: int = 1
    tenants: Mapping[str, int | None] = field(default_factory=dict)
    overrides: Mapping[str, str] = field(default_factory=dict)

    def simulator_args(self) -> list[str]:
        """The Graph simulator's options on the command line (`python -m devstack.graph_simulator`)."""
        return [
            "--write-limit", str(self.write_limit),
            "--write-window", f"{self.write_window_s:g}",
            "--in-flight-grace", str(CONCURRENT_CLIENT_GRACE_S),
        ]  # fmt: skip

    def simulator(self, signing_key: bytes) -> GraphSimulator:
        """The Graph simulator in this process, with the same options."""
        return GraphSimulator(
            signing_key,
            write_limit=self.write_limit,
            write_window_s=self.write_window_s,
            in_flight_grace_s=CONCURRENT_CLIENT_GRACE_S,
        )

    def app_settings(
        self,
        *,
        storage: str,
        input_queue: str,
        result_queue: str,
        graph_base_url: str,
        identity: Mapping[str, str],
        more: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The function's app settings on these parts: the sample's, then the parts', then the overrides.

        `identity`: the managed-identity emulator's variables; `more`: what only one way of running
        adds (fresh table names, the served tenants' settings).
        """
        return {
            **sample_values(),
            "AzureWebJobsStorage": storage,
            "INPUT_QUEUE_NAME": input_queue,
            "RESULT_QUEUE_NAME": result_queue,
            "GRAPH_BASE_URL": graph_base_url,
            "CREDENTIAL_MODE": "managedIdentity",
            **deployed_settings(
                self.instances,
                write_limit=self.write_limit,
                window_s=self.write_window_s,
                multitenant=bool(self.tenants),
            ),
            **identity,
            **(more or {}),
            **self.overrides,
        }


def runner_command(*args: str) -> list[str]:
    """`python -m devstack.runner --app function_app ...`: one host instance as its own process."""
    return [sys.executable, "-m", "devstack.runner", "--app", "function_app", *args]


def create_queues(connection: str, *names: str) -> None:
    """Create the queues the function reads and writes (an existing one is left as it is)."""
    with QueueServiceClient.from_connection_string(connection) as service:
        for name in names:
            with suppress(ResourceExistsError):
                service.create_queue(name)


class LocalStack:
    """Start everything on loopback; `with LocalStack() as stack: stack.send(...); stack.runner...`."""

    def __init__(
        self,
        *,
        write_limit: int = 100,
        write_window_s: float = 20.0,
        settings: Mapping[str, str] | None = None,
        azurite: Azurite | None = None,
        tenants: Mapping[str, int | None] | None = None,
        instances: int = 1,
    ) -> None:
        """The parts `StackSpec` describes (`settings` are its overrides), on `azurite` if given.

        `instances`: the Flex instances whose app settings the stack uses (`deployed_settings`); start
        that many runner processes with `spawn_runner` to run the deployment's pacing.
        """
        self.spec = StackSpec(write_limit, write_window_s, instances, dict(tenants or {}), dict(settings or {}))
        self._shared_azurite = azurite
        self._exit = ExitStack()
        self._saved_env: dict[str, str | None] = {}
        self._processes: list[subprocess.Popen[bytes]] = []
        self.runner: Runner | None = None

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        key = secrets.token_bytes(32)
        self.azurite = self._shared_azurite or self._exit.enter_context(Azurite())
        self.identity = self._exit.enter_context(IdentityEmulator(signing_key=key))
        self.graph = self._exit.enter_context(self.spec.simulator(key))
        self.entra: EntraEmulator | None = None
        run = uuid.uuid4().hex[:8]
        more = {
            "AUDIT_TABLE_NAME": f"audit{run}",  # one per stack: tests sharing Azurite read only their own
            "GRAPH_PACING_TABLE_NAME": f"pacing{run}",  # and their own tenants' schedules
        }
        if tenants := self.spec.tenants:
            self.entra = self._exit.enter_context(
                EntraEmulator(key, trusted_identity=SYSTEM_ASSIGNED_CLIENT_ID, consented_tenants=tenants)
            )
            for tenant_id, limit in tenants.items():
                self.graph.add_tenant(tenant_id, write_limit=limit)
            more |= {
                "HOME_TENANT_ID": self.identity.tenant_id,
                "SERVED_TENANT_IDS": ",".join(tenants),
                "MULTITENANT_APP_CLIENT_ID": self.entra.app_client_id,
                **self.entra.env(),
            }
        self.settings: dict[str, str] = self.spec.app_settings(
            storage=self.azurite.connection_string,
            input_queue=f"cs{run}-updates",
            result_queue=f"cs{run}-results",
            graph_base_url=self.graph.base_url,
            identity=self.identity.env(),
            more=more,
        )
        self._export(self.settings)
        names = self.settings["INPUT_QUEUE_NAME"], self.settings["RESULT_QUEUE_NAME"]
        poison = poison_queue_name(names[0])
        assert poison is not None, "a queue name a stack is given is short enough to have a poison queue"
        create_queues(self.azurite.connection_string, *names)  # the settings may name it differently
        service = QueueServiceClient.from_connection_string(self.azurite.connection_string)
        self.input_queue, self.result_queue = (service.get_queue_client(name) for name in names)
        self.poison_queue = service.get_queue_client(poison)

    def _export(self, settings: Mapping[str, str]) -> None:
        """Put the app settings where the function reads them, and forget what was cached before."""
        for name, value in settings.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        reset_pipeline()  # settings and pipeline are built once per process

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.runner is not None:
            self.runner.stop()
        for process in self._processes:
            _terminate(process)
        self._exit.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_pipeline()  # settings and pipeline are built once per process

    # -- the function host ----------------------------------------------------------------------------

    def start_runner(self) -> Runner:
        """Run `function_app` in this process, as `func start` would."""
        import function_app  # noqa: PLC0415 - imported once the settings are in place

        self.runner = Runner(function_app.app, settings=self.settings, host_json=REPO / "host.json").start()
        return self.runner

    def spawn_runner(self, *runner_args: str) -> subprocess.Popen[bytes]:
        """Run `python -m devstack.runner --app function_app` as its own process (one host instance)."""
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            runner_command(*runner_args),
            cwd=REPO,
            env={**os.environ, **self.settings},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._processes.append(process)
        return process

    # -- producers and consumers ----------------------------------------------------------------------

    def send(self, message: Mapping[str, Any] | str | bytes, encoding: Literal["none", "base64"] = "none") -> str:
        """Put one message on the input queue as a producer would; returns the queue message id."""
        if isinstance(message, Mapping):
            message = json.dumps(message)
        raw = message.encode() if isinstance(message, str) else message
        text = base64.b64encode(raw).decode() if encoding == "base64" else raw.decode("utf-8", "surrogateescape")
        return str(self.input_queue.send_message(text).id)

    def outcomes(self) -> list[dict[str, Any]]:
        """Every outcome on the result queue, read and removed."""
        return [json.loads(text) for text in drain(self.result_queue)]

    def poisoned(self) -> list[str]:
        """Every message on the poison queue, read and removed."""
        return list(drain(self.poison_queue))


def drain(queue: QueueClient) -> Iterator[str]:
    """Receive and delete everything visible on `queue`."""
    with suppress(ResourceNotFoundError):
        while batch := list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30)):
            for message in batch:
                yield str(message.content)
                queue.delete_message(message)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
