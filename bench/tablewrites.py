"""What writing an outcome's audit rows costs, each way evaluated: `python -m bench.tablewrites`.

The ways side by side, interleaved round by round, in this process against one Azurite table: the
azure-data-tables SDK (a four-row entity-group transaction, one row in a transaction, `upsert_entity`)
and `shared/tables.py` (four rows, and the outcome row alone: the leaner-rows option). The outcomes are
certstate's own (the pipeline with a Graph stand-in answering 204), so the rows are the deployed ones.
CPU is this process's `time.process_time()` around each write; nothing else runs in it meanwhile.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from bench.messages import bodies
from devstack.azurite import Azurite
from shared.audit import entities
from shared.contract.errors import GraphTrace
from shared.contract.outcomes import Result
from shared.graph.client import GraphResult
from shared.graph.pacing import WritePacer
from shared.graph.tenancy import TenantDirectory
from shared.pipeline import CertStatePipeline, Delivery
from shared.registry import Served

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

SDK_TRANSACTION = "azure-data-tables: the four rows in one transaction"
SDK_ONE_ROW = "azure-data-tables: the outcome row alone in a transaction"
SDK_UPSERT = "azure-data-tables: `upsert_entity` of the outcome row"
LEAN = "`shared/tables.py`: the four rows in one transaction (deployed)"
LEAN_ONE_ROW = "`shared/tables.py`: the outcome row alone (leaner rows)"


class _Answered:
    """Graph's part, answered at once: the measurement is of the rows, not of the PATCH."""

    def patch(self, request: Any, tenant: Any, booked: float | None = None) -> GraphResult:  # noqa: ANN401
        trace = GraphTrace(str(uuid.uuid4()), str(uuid.uuid4()), "Mon, 07 Dec 2026 07:00:00 GMT")
        return GraphResult(status=204, trace=trace, attempts=1)


def _results(count: int) -> list[tuple[Result, bytes]]:
    never = cast("TokenCredential", object())  # never asked: the Graph stand-in takes no token
    directory = TenantDirectory(
        home_credential=never,
        home_tenant_id=None,
        served=Served((), None, paused_recheck_seconds=30),
        cross_tenant_credential=lambda _: never,
        pacer=lambda _: WritePacer(1_000_000, 1.0),
    )
    pipeline = CertStatePipeline(
        graph=_Answered(), tenants=directory, graph_base_url="https://graph.microsoft.com/beta", max_dequeue_count=5
    )
    found = []
    for body in bodies(count):
        result = pipeline.handle(body, Delivery(str(uuid.uuid4()), 1, datetime.now(UTC)))
        assert result is not None
        found.append((result, body))
    return found


def run(*, writes: int, rounds: int) -> dict[str, Any]:
    """CPU per write of each way (median of every write, and the median of each round's), in milliseconds."""
    from azure.data.tables import TableServiceClient, UpdateMode  # noqa: PLC0415

    from shared.tables import TableRows  # noqa: PLC0415

    samples: dict[str, list[float]] = {}
    with Azurite() as azurite, TableServiceClient.from_connection_string(azurite.connection_string) as service:
        name = "bench" + uuid.uuid4().hex[:12]
        sdk = service.create_table(name)
        lean = TableRows.from_connection_string(azurite.connection_string, name)
        results = iter(_results(writes * rounds * 5 + 5 * 20))

        def sdk_rows() -> list[dict[str, Any]]:
            result, body = next(results)
            return [
                {"PartitionKey": e.partition_key, "RowKey": e.row_key, **_properties(e.properties)}
                for e in entities(result, body, None)
            ]

        def lean_rows() -> list[Any]:
            result, body = next(results)
            return entities(result, body, None)

        ways: dict[str, Callable[[], object]] = {
            SDK_TRANSACTION: lambda: sdk.submit_transaction(
                [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in sdk_rows()]
            ),
            SDK_ONE_ROW: lambda: sdk.submit_transaction([("upsert", sdk_rows()[0], {"mode": UpdateMode.REPLACE})]),
            SDK_UPSERT: lambda: sdk.upsert_entity(sdk_rows()[0], mode=UpdateMode.REPLACE),
            LEAN: lambda: lean.upsert(lean_rows()),
            LEAN_ONE_ROW: lambda: lean.upsert(lean_rows()[:1]),
        }
        for write in ways.values():  # connections open, modules loaded
            for _ in range(20):
                write()
        rounds_medians: dict[str, list[float]] = {label: [] for label in ways}
        for _ in range(rounds):
            for label, write in ways.items():
                these = []
                for _ in range(writes):
                    started = time.process_time()
                    write()
                    these.append((time.process_time() - started) * 1000)
                samples.setdefault(label, []).extend(these)
                rounds_medians[label].append(statistics.median(these))
        lean.close()
    return {
        label: {"cpuMedianMs": statistics.median(values), "roundMediansMs": rounds_medians[label]}
        for label, values in samples.items()
    }


def _properties(text: str) -> dict[str, Any]:
    """The properties of a serialised row, as the SDK takes them (its own types for dates and bytes)."""
    import base64  # noqa: PLC0415
    import json  # noqa: PLC0415

    raw = json.loads(text)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.endswith("@odata.type"):
            continue
        kind = raw.get(f"{key}@odata.type")
        if kind == "Edm.DateTime":
            out[key] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif kind == "Edm.Binary":
            out[key] = base64.b64decode(value)
        else:
            out[key] = value
    return out


def main() -> None:
    """Measure every way and rewrite the `table-writes` block of docs/benchmarks.md (the rest stays)."""
    from pathlib import Path  # noqa: PLC0415

    from bench.markdown import provenance, splice_file  # noqa: PLC0415
    from bench.report import table_writes  # noqa: PLC0415

    ways = run(writes=150, rounds=4)
    source = {
        "command": ".venv/bin/python -m bench.tablewrites",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    document = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    splice_file(document, {"table-writes": [provenance(source), "", *table_writes(ways)]})
    for label, figures in ways.items():
        print(f"{figures['cpuMedianMs']:7.3f} ms  {label}")


if __name__ == "__main__":
    main()
