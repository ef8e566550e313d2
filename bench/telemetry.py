"""What telemetry and the audit trail cost per message: `python -m bench --only telemetry`.

The lean route (bench/worker.py: pydantic, the same PATCH over one `requests.Session`, its outcome JSON)
and the cost-per-message measurement of section 2 (bench/cost.py: `CertStatePipeline.handle` on bodies in
memory, a fresh worker process per round, variants interleaved) and the cold start of section 4, for
certstate as deployed with telemetry off (no connection string), on (the Azure Monitor exporters as
`shared.telemetry` sets them up, exporting to `devstack.appinsights.FakeIngestion` on loopback, spans sampled
at infra/main.bicep's default `traceSamplingPercent` as the template deploys it), and on with the audit
trail (the rows of each outcome in one entity-group transaction to an Azurite table, sampled so and with
every span kept) and the shared pacing table (shared/graph/budget.py), as deployed with a storage
account; every ratio is to the lean route of the same round; what one claim on the pacing table costs;
and the package size with the added runtime dependencies. CPU is the whole worker process's
`time.process_time()` around each message, so the exporters' background threads (serialising and
posting batches) are in it, spread over the messages they export.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import cost, tablewrites
from devstack.appinsights import FakeIngestion
from devstack.azurite import Azurite

_TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "main.bicep"


def deployed_sampling_percent(template: Path = _TEMPLATE) -> int:
    """The template's default `traceSamplingPercent`: the share of message spans kept as deployed."""
    found = re.search(r"^param traceSamplingPercent int = (\d+)$", template.read_text(encoding="utf-8"), re.MULTILINE)
    if found is None:
        raise ValueError(f"no traceSamplingPercent default in {template}")
    return int(found.group(1))


SAMPLED = deployed_sampling_percent()
LEAN = "lean route (requests + pydantic, same PATCH)"
OFF = "telemetry off"
ON = f"telemetry on ({SAMPLED} % of spans)"
AUDITED = f"telemetry on ({SAMPLED} % of spans) + audit trail"
AUDITED_ALL = "telemetry on (every span) + audit trail"
TOGETHER = 12
"""Invocations at once, as host.json lets the host run them (batchSize 8 + newBatchThreshold 4)."""
LEAN_TOGETHER = f"lean route, {TOGETHER} at once"
AUDITED_TOGETHER = f"{AUDITED}, {TOGETHER} at once"
_REFERENCE = {LEAN_TOGETHER: LEAN_TOGETHER, AUDITED_TOGETHER: LEAN_TOGETHER}
"""What a variant's ratio is taken to: the lean route at the same concurrency (else the sequential one)."""


def _extra(label: str, ingestion: FakeIngestion, azurite: Azurite | None) -> dict[str, str]:
    """The app settings of a variant: the ingestion endpoint, the template's span sampling, the storage account."""
    extra: dict[str, str] = {}
    if label in (ON, AUDITED, AUDITED_ALL, AUDITED_TOGETHER):
        percent = 100 if label == AUDITED_ALL else SAMPLED
        extra.update(ingestion.env(), OTEL_TRACES_SAMPLER="microsoft.fixed_percentage",
                     OTEL_TRACES_SAMPLER_ARG=f"{percent / 100:.2f}")  # fmt: skip
    if label in (AUDITED, AUDITED_ALL, AUDITED_TOGETHER) and azurite is not None:
        extra.update(AzureWebJobsStorage=azurite.connection_string, AUDIT_TABLE_NAME=f"bench{uuid.uuid4().hex[:12]}")
    return extra


def run(*, messages: int, rounds: int, cold_runs: int) -> dict[str, Any]:
    """Per-message CPU, wall time and memory for each variant, and the cold start of the certstate ones."""
    labels = (LEAN, OFF, ON, AUDITED, AUDITED_ALL, LEAN_TOGETHER, AUDITED_TOGETHER)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    exported: dict[str, list[float]] = {label: [] for label in labels}
    exported_bytes: dict[str, list[float]] = {label: [] for label in labels}
    with ExitStack() as stack:
        azurite = stack.enter_context(Azurite())
        for _ in range(rounds):
            for label in labels:
                with cost.services() as svc, FakeIngestion() as ingestion:
                    variant = "lean" if label in (LEAN, LEAN_TOGETHER) else "certstate"
                    args = ["cost", "--variant", variant, "--messages", str(max(1, messages // rounds))]
                    if label in (LEAN_TOGETHER, AUDITED_TOGETHER):
                        args += ["--concurrency", str(TOGETHER)]
                    result = cost.worker(
                        cost.python_for("certstate"), args, svc.env(**_extra(label, ingestion, azurite))
                    )
                    result.update(svc.counts())
                    handled = result["messages"] + result["warmup"]
                    exported[label].append(len(ingestion.envelopes()) / handled)
                    exported_bytes[label].append(ingestion.bytes_received / handled)
                runs[label].append(result)
        cold = _cold(cold_runs, azurite)
    pooled = {label: cost._pool(results) for label, results in runs.items()}
    for label, results in runs.items():
        # Paired by round: both sides of a ratio ran in the same spell of the machine.
        pooled[label]["cpuRatioToReference"] = _paired(results, runs[_REFERENCE.get(label, LEAN)])
        pooled[label]["cpuRatioToBare"] = None if label in (LEAN, *_REFERENCE) else _paired(results, runs[OFF])
        pooled[label]["exportedPerMessage"] = statistics.median(exported[label])
        pooled[label]["exportedBytesPerMessage"] = statistics.median(exported_bytes[label])
    package = cost.package_size("certstate", with_zip=True)
    writes = tablewrites.run(writes=max(20, messages // 20), rounds=min(rounds, 4))
    claims = pacing_claims(writes=max(20, messages // 20), rounds=min(rounds, 4))
    return {
        "cost": pooled, "cold": cold, "package": package, "tableWrites": writes, "pacingClaims": claims,
        "messages": messages, "rounds": rounds,
    }  # fmt: skip


PACING_SDK = "azure-data-tables: `update_entity` with `If-Match`, no retry"
PACING_LEAN = "`TableBudgetStore` (deployed): shared/tables.py's `PUT` with `If-Match`, sent once"


def pacing_claims(*, writes: int, rounds: int) -> dict[str, Any]:
    """CPU of one claim's conditional write of a tenant's schedule row, each way, and claims per write at full rate.

    The cost benchmark's pacer never waits, so a claim there covers two seconds of a dense schedule: hundreds
    of messages. Serving a tenant at its budget, a claim covers `ALONE_REACH_SECONDS` of slots: what a
    message carries of the store is one claim's CPU over that many writes.
    """
    from azure.core import MatchConditions  # noqa: PLC0415
    from azure.data.tables import TableServiceClient, UpdateMode  # noqa: PLC0415

    from shared.graph.budget import (  # noqa: PLC0415
        ALONE_REACH_SECONDS,
        PARTITION,
        READ_TIMEOUT_SECONDS,
        BudgetRow,
        TableBudgetStore,
    )
    from shared.settings import Settings  # noqa: PLC0415
    from shared.tables import TableRows  # noqa: PLC0415

    defaults = Settings.model_fields
    budget, window = defaults["GRAPH_WRITE_BUDGET"].default, defaults["GRAPH_WRITE_WINDOW_SECONDS"].default
    per_claim = max(1, int(ALONE_REACH_SECONDS / (window / budget)))
    samples: dict[str, list[float]] = {PACING_SDK: [], PACING_LEAN: []}
    with Azurite() as azurite, TableServiceClient.from_connection_string(azurite.connection_string) as service:
        name = "pacing" + uuid.uuid4().hex[:12]
        rows = TableRows.from_connection_string(
            azurite.connection_string, name, read_seconds=READ_TIMEOUT_SECONDS, retry=False
        )
        store = TableBudgetStore(rows, create_missing=True)
        table = service.get_table_client(name)
        tag = {"sdk": store.write("sdk", BudgetRow(next_slot=0.0, last_by="bench"), None)}
        tag["lean"] = store.write("lean", BudgetRow(next_slot=0.0, last_by="bench"), None)

        def sdk(i: int) -> None:
            entity = {"PartitionKey": PARTITION, "RowKey": "sdk", "nextSlot": float(i), "gateUntil": 0.0,
                      "lastBy": "bench", "sharedUntil": 0.0, "returnAt": 0.0, "leanUntil": 0.0}  # fmt: skip
            written = table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=tag["sdk"], match_condition=MatchConditions.IfNotModified,
                retry_total=0, read_timeout=READ_TIMEOUT_SECONDS,
            )  # fmt: skip
            tag["sdk"] = str(written["etag"])

        def lean(i: int) -> None:
            tag["lean"] = store.write("lean", BudgetRow(next_slot=float(i), last_by="bench"), tag["lean"])

        ways = {PACING_SDK: sdk, PACING_LEAN: lean}
        for write in ways.values():  # connections open, modules loaded
            for i in range(20):
                write(i)
        for _ in range(rounds):
            for label, write in ways.items():
                for i in range(writes):
                    started = time.process_time()
                    write(i)
                    samples[label].append((time.process_time() - started) * 1000)
        rows.close()
    return {
        "writesPerClaim": per_claim,
        "budget": budget,
        "windowSeconds": window,
        "ways": {label: {"cpuMedianMs": statistics.median(values)} for label, values in samples.items()},
    }


def _paired(results: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float:
    """The median over rounds of the ratio of the two variants' median CPU per message in that round."""
    ratios: list[float] = [
        statistics.median(r["cpuSamplesMs"]) / statistics.median(ref["cpuSamplesMs"])
        for r, ref in zip(results, reference, strict=True)
    ]
    return statistics.median(ratios)


def _cold(runs: int, azurite: Azurite) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for label in (OFF, ON, AUDITED):
        results = []
        for _ in range(runs):
            with cost.services() as svc, FakeIngestion() as ingestion:
                started = time.perf_counter()
                env = svc.env(**_extra(label, ingestion, azurite))
                result = cost.worker(cost.python_for("certstate"), ["cold", "--variant", "certstate"], env)
                result["processSeconds"] = time.perf_counter() - started
                results.append(result)
        found[label] = {
            "importSeconds": statistics.median(r["importSeconds"] for r in results),
            "importAppSeconds": statistics.median(r["importAppSeconds"] for r in results),
            "firstMessageSeconds": statistics.median(r["firstMessageSeconds"] for r in results),
            "peakRssAfterImportMb": max(r["peakRssAfterImportMb"] for r in results),
            "peakRssMb": max(r["peakRssMb"] for r in results),
            "modules": results[0]["modules"],
            "runs": runs,
        }
    return found
