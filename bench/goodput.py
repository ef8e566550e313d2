"""Goodput: a backlog drained by the local runner driving the real function_app against a write limit.

Each runner is its own process (`python -m bench.worker drain`), started with the app settings in
its environment, as a Functions host instance starts its worker. The simulator, the identity
emulator and Azurite run here (the simulator and emulator in this process, Azurite in its own),
so what a worker process spends is its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from bench.cost import worker_argv
from bench.messages import bodies
from bench.services import CountingGraphSimulator, queue_names
from devstack.azurite import Azurite
from devstack.entra_emulator import EntraEmulator
from devstack.identity_emulator import SYSTEM_ASSIGNED_CLIENT_ID, IdentityEmulator

REPO = Path(__file__).resolve().parent.parent
_NAMES = queue_names()


@dataclass(frozen=True)
class Scenario:
    """One drain: the simulator's limit, the processes and the budget each is given."""

    name: str
    write_limit: int
    window_s: float
    processes: int
    budget: int
    messages: int = 500

    @property
    def budget_share(self) -> float:
        """What the budgets add up to, as a share of the limit."""
        return self.processes * self.budget / self.write_limit


def infra_budget(write_limit: int, instances: int, reserve: int = 0) -> int:
    """GRAPH_WRITE_BUDGET as infra/main.bicep derives it: `B = floor(A / N) - 1`.

    A = write_limit - reserve (writes per window left to other tools writing as the same app),
    N = min(instances, floor(A / 2)). An unsynchronised, evenly spaced pacer can land B + 1 writes in one of
    Graph's windows, so N * (B + 1) <= A holds without any coordination between instances.
    """
    available = write_limit - reserve
    n = max(1, min(instances, available // 2))
    return max(1, available // n - 1)


def run(azurite: Azurite, scenario: Scenario, log_dir: Path) -> dict[str, Any]:
    """Fill a queue, drain it with `scenario.processes` runner processes, and measure what Graph saw."""
    key = secrets.token_bytes(32)
    input_name, result_name = next(_NAMES)
    with (
        IdentityEmulator(signing_key=key) as identity,
        CountingGraphSimulator(key, write_limit=scenario.write_limit, write_window_s=scenario.window_s) as graph,
    ):
        service = QueueServiceClient.from_connection_string(azurite.connection_string)
        inputs, results = service.get_queue_client(input_name), service.get_queue_client(result_name)
        poison = service.get_queue_client(input_name + "-poison")
        inputs.create_queue()
        results.create_queue()
        sent = {inputs.send_message(body.decode()).id for body in bodies(scenario.messages)}
        queues = (input_name, result_name)
        env = app_env(azurite, graph.base_url, identity, queues, budget=scenario.budget, window_s=scenario.window_s)
        started = time.monotonic()
        reports = drain_with_workers(env, scenario.name, scenario.processes, log_dir)
        elapsed = time.monotonic() - started
        outcomes = [json.loads(text) for text in drain_queue(results)]
        poisoned = len(list(drain_queue(poison)))
        stats = graph.stats()
        log_entries = graph.requests()
        connections = graph.connections
        token_requests = identity.token_requests
    return _summarise(
        scenario=scenario,
        sent=sent,
        outcomes=outcomes,
        poisoned=poisoned,
        stats=stats,
        log=log_entries,
        connections=connections,
        token_requests=token_requests,
        reports=reports,
        elapsed=elapsed,
    )


def app_env(
    azurite: Azurite, graph_base_url: str, identity: IdentityEmulator, queues: tuple[str, str], *, budget: int,
    window_s: float,
) -> dict[str, str]:  # fmt: skip
    """A runner process's environment: the app settings as the Functions host would set them."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AzureWebJobsStorage": azurite.connection_string,
        "INPUT_QUEUE_NAME": queues[0],
        "RESULT_QUEUE_NAME": queues[1],
        "GRAPH_BASE_URL": graph_base_url,
        "CREDENTIAL_MODE": "managedIdentity",
        "GRAPH_WRITE_BUDGET": str(budget),
        "GRAPH_WRITE_WINDOW_SECONDS": str(window_s),
        # Each process at its own static budget, as these drains measure (the shared one: bench/scaleout.py).
        "GRAPH_PACING_TABLE_NAME": "",
        **identity.env(),
    }


def drain_with_workers(
    env: dict[str, str], name: str, processes: int, log_dir: Path, *, argv: list[str] | None = None,
    timeout: float = 600.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """Start `processes` runner processes at once (`argv`, default `python -m bench.worker drain`); their reports."""
    workers = []
    for index in range(processes):
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        log = (log_dir / f"{slug}-{index}.log").open("wb")
        process = subprocess.Popen(
            argv or worker_argv(sys.executable, ["drain"]), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        workers.append((process, log))
    reports = []
    for process, log in workers:
        out, _ = process.communicate(timeout=timeout)
        log.close()
        if process.returncode != 0:
            raise RuntimeError(f"drain worker failed ({process.returncode}); see {log.name}")
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


@dataclass
class TenantQueue:
    """One multi-tenant drain's services and queues, filled: what bench/tenants.py and bench/scaleout.py share."""

    identity: IdentityEmulator
    graph: CountingGraphSimulator
    entra: EntraEmulator
    names: tuple[str, str]
    sent: dict[str, str]  # message id -> tenant
    lifted: list[float] = field(default_factory=list)  # when the storm was lifted (monotonic), if it was
    _service: QueueServiceClient | None = None

    def outcomes(self) -> tuple[list[dict[str, Any]], int]:
        """Every outcome on the result queue and the number of poisoned messages, both queues emptied."""
        assert self._service is not None
        outcomes = [json.loads(text) for text in drain_queue(self._service.get_queue_client(self.names[1]))]
        return outcomes, len(drain_queue(self._service.get_queue_client(self.names[0] + "-poison")))


@contextlib.contextmanager
def tenant_queue(
    azurite: Azurite, tenants: tuple[str, ...], backlogs: tuple[int, ...], *, write_limit: int, window_s: float,
    storm_limit: int | None = None,
) -> Iterator[TenantQueue]:  # fmt: skip
    """Emulators for identity, Entra and Graph (the last tenant in a storm at `storm_limit`, lifted once the
    others have every write they need), and one queue with every tenant's messages in random order."""
    key = secrets.token_bytes(32)
    names = next(_NAMES)
    storm = tenants[-1] if storm_limit is not None else None
    stop = threading.Event()
    with (
        IdentityEmulator(signing_key=key) as identity,
        CountingGraphSimulator(key, write_limit=write_limit, write_window_s=window_s) as graph,
        EntraEmulator(key, trusted_identity=SYSTEM_ASSIGNED_CLIENT_ID, consented_tenants=tenants) as entra,
    ):
        for tenant in tenants:
            graph.add_tenant(tenant, write_limit=storm_limit if tenant == storm else None)
        service = QueueServiceClient.from_connection_string(azurite.connection_string)
        inputs = service.get_queue_client(names[0])
        inputs.create_queue()
        service.get_queue_client(names[1]).create_queue()
        messages = [
            (tenant, body)
            for i, (tenant, count) in enumerate(zip(tenants, backlogs, strict=True))
            for body in bodies(count, start=1000 * i, tenants=(tenant,))
        ]
        random.Random(12).shuffle(messages)
        sent = {inputs.send_message(body.decode()).id: tenant for tenant, body in messages}
        drain = TenantQueue(identity, graph, entra, names, sent, _service=service)
        if storm is not None:
            others = dict(zip(tenants[:-1], backlogs[:-1], strict=True))
            threading.Thread(target=_lift_storm, args=(graph, storm, others, drain.lifted, stop), daemon=True).start()
        try:
            yield drain
        finally:
            stop.set()


def _lift_storm(
    graph: CountingGraphSimulator, storm: str, others: dict[str, int], lifted: list[float], stop: threading.Event
) -> None:
    """Give the storm tenant its normal limit back once the others have every write they need."""
    while not stop.wait(0.2):
        by_tenant = graph.stats()["byTenant"]
        if all(by_tenant.get(t, {}).get("writes", 0) >= n for t, n in others.items()):
            graph.add_tenant(storm)
            lifted.append(time.monotonic())
            return


def drain_queue(queue: QueueClient) -> list[str]:
    texts: list[str] = []
    try:
        while batch := list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60)):
            for message in batch:
                texts.append(str(message.content))
                queue.delete_message(message)
    except ResourceNotFoundError:
        pass
    return texts


def _summarise(
    *,
    scenario: Scenario,
    sent: set[str],
    outcomes: list[dict[str, Any]],
    poisoned: int,
    stats: dict[str, Any],
    log: list[dict[str, Any]],
    connections: int,
    token_requests: int,
    reports: list[dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    writes = sorted(r["monotonic"] for r in log if r["method"] == "PATCH" and r["status"] == 200)
    span = writes[-1] - writes[0] if len(writes) > 1 else 0.0
    rate = (len(writes) - 1) / span if span else 0.0
    limit_rate = scenario.write_limit / scenario.window_s
    # Without the ramp and the tail (where one process may hold the last messages while another idles).
    lo, hi = len(writes) // 20, len(writes) - 1 - len(writes) // 20
    middle = (hi - lo) / (writes[hi] - writes[lo]) if hi > lo else 0.0
    # How close a write came to the limit: a write is refused once `limit` others arrived in the last
    # window, so the margin of write k is a[k] - a[k - limit] - window (>= 0 for every accepted write).
    limit = scenario.write_limit
    margins = [writes[k] - writes[k - limit] - scenario.window_s for k in range(limit, len(writes))]
    by_status = stats["byStatus"]
    requests = stats["requests"]
    outcome_ids = Counter(o["messageId"] for o in outcomes)
    invocations = sum(r["runner"]["invocations"] for r in reports)
    cpu = sum(r["cpuSeconds"] for r in reports)
    return {
        "scenario": asdict(scenario),
        "budgetShare": scenario.budget_share,
        "successfulWrites": len(writes),
        "drainSeconds": span,
        "writesPerSecond": rate,
        "goodput": rate / limit_rate,
        "goodputMiddle90": middle / limit_rate,
        "pacerEfficiency": rate / limit_rate / scenario.budget_share,
        "closestCallMs": min(margins) * 1000 if margins else None,
        "requests": requests,
        "byStatus": by_status,
        "throttled": stats["throttled"],
        "share429": by_status.get("429", 0) / requests if requests else 0.0,
        "earlyRetries": stats["earlyRetries"],
        "peakWindowWrites": stats["peakWindowWrites"],
        "outcomes": len(outcomes),
        "outcomeStatuses": dict(Counter(o["status"] for o in outcomes)),
        "lost": len(sent - set(outcome_ids)),
        "duplicateOutcomes": sum(n - 1 for n in outcome_ids.values()),
        "poisoned": poisoned,
        "tokenRequests": token_requests,
        "connections": connections,
        "concurrencyPerProcess": reports[0]["concurrency"],
        "invocations": invocations,
        "workerCpuSeconds": cpu,
        "cpuPerMessageMs": cpu / invocations * 1000 if invocations else 0.0,
        "peakRssMb": max(r["peakRssMb"] for r in reports),
        "elapsedSeconds": elapsed,
        "workers": reports,
    }


def main() -> None:
    """Run one scenario from the command line (for exploring): NAME LIMIT WINDOW PROCESSES BUDGET [MESSAGES]."""
    name, limit, window, processes, budget, *rest = sys.argv[1:]
    scenario = Scenario(name, int(limit), float(window), int(processes), int(budget), int(rest[0]) if rest else 500)
    with Azurite() as azurite, tempfile.TemporaryDirectory() as logs:
        result = run(azurite, scenario, Path(logs))
        result.pop("workers")
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
