"""The whole local pipeline on real parts, for the run command and the end-to-end tests.

Azurite, the managed-identity emulator, the Graph simulator and the local runner driving
`function_app.py`: `devstack.demo` and tests/e2e use this one wiring, so both exercise the same thing.
With `tenants`, the Entra ID emulator (HTTPS, a generated CA) joins them, the Graph simulator gets a
store per tenant, and the function serves those tenants through the multi-tenant app, as deployed.

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
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from devstack.azurite import Azurite
from devstack.entra_emulator import EntraEmulator
from devstack.graph_simulator import CONCURRENT_CLIENT_GRACE_S, GraphSimulator
from devstack.identity_emulator import SYSTEM_ASSIGNED_CLIENT_ID, IdentityEmulator
from devstack.runner import Runner
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
        """`tenants`: tenant id -> its Graph write limit (None: `write_limit`), served besides the home tenant.

        `instances`: the Flex instances whose app settings the stack uses (`deployed_settings`); start
        that many runner processes with `spawn_runner` to run the deployment's pacing.
        """
        self._instances = instances
        self._tenants = dict(tenants or {})
        self._write_limit = write_limit
        self._write_window_s = write_window_s
        self._overrides = dict(settings or {})
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
        self.graph = self._exit.enter_context(
            GraphSimulator(
                key,
                write_limit=self._write_limit,
                write_window_s=self._write_window_s,
                in_flight_grace_s=CONCURRENT_CLIENT_GRACE_S,
            )
        )
        self.entra: EntraEmulator | None = None
        tenant_settings: dict[str, str] = {}
        if self._tenants:
            self.entra = self._exit.enter_context(
                EntraEmulator(key, trusted_identity=SYSTEM_ASSIGNED_CLIENT_ID, consented_tenants=self._tenants)
            )
            for tenant_id, limit in self._tenants.items():
                self.graph.add_tenant(tenant_id, write_limit=limit)
            tenant_settings = {
                "HOME_TENANT_ID": self.identity.tenant_id,
                "SERVED_TENANT_IDS": ",".join(self._tenants),
                "MULTITENANT_APP_CLIENT_ID": self.entra.app_client_id,
                **self.entra.env(),
            }
        run = uuid.uuid4().hex[:8]
        self.settings: dict[str, str] = {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "INPUT_QUEUE_NAME": f"cs{run}-updates",
            "RESULT_QUEUE_NAME": f"cs{run}-results",
            "AUDIT_TABLE_NAME": f"audit{run}",  # one per stack: tests sharing Azurite read only their own
            "GRAPH_PACING_TABLE_NAME": f"pacing{run}",  # and their own tenants' schedules
            "GRAPH_BASE_URL": self.graph.base_url,
            "CREDENTIAL_MODE": "managedIdentity",
            **deployed_settings(
                self._instances,
                write_limit=self._write_limit,
                window_s=self._write_window_s,
                multitenant=bool(self._tenants),
            ),
            **self.identity.env(),
            **tenant_settings,
            **self._overrides,
        }
        self._export(self.settings)
        service = QueueServiceClient.from_connection_string(self.azurite.connection_string)
        self.input_queue = service.get_queue_client(self.settings["INPUT_QUEUE_NAME"])
        self.result_queue = service.get_queue_client(self.settings["RESULT_QUEUE_NAME"])
        self.poison_queue = service.get_queue_client(self.settings["INPUT_QUEUE_NAME"] + "-poison")
        for queue in (self.input_queue, self.result_queue):
            queue.create_queue()

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
            [sys.executable, "-m", "devstack.runner", "--app", "function_app", *runner_args],
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
