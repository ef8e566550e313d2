"""The tenant registry at scale (docs/tenants.md, "The registry"): 1,000 registered tenants.

Measures, against a real table (Azurite's table service, the production read of `shared.wiring.build_served`):

- **lookup per message**: `TenantDirectory.tenant` for a built tenant, through the registry (a dict lookup
  between reads) and through SERVED_TENANT_IDS alone, in microseconds per call, single-threaded;
- **the read**: one whole-registry read (one query, paged by the table service at 1,000 rows), in ms: the
  first of a process (the table client built, a connection opened) and three later ones;
- **memory**: what the registry keeps for 1,000 tenants, its entries (tracemalloc while they are built);
- **time to apply**: a row paused with the CLI's library at t0, lookups every 10 ms from then on: the time until
  a lookup sees it paused, with a short refresh interval (`--refresh`), the bound being interval + one read.

`python -m bench.registry [--tenants 1000] [--refresh 2]` prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
import tracemalloc
import uuid
from typing import Any

from azure.data.tables import TableServiceClient

from devstack.azurite import Azurite
from producer.tenants import Registry
from shared.contract.errors import DeferralRequested
from shared.contract.tenants import PARTITION, from_entity
from shared.graph.pacing import WritePacer
from shared.graph.tenancy import TenantDirectory
from shared.registry import Served
from shared.settings import Settings
from shared.wiring import build_served

APP = "a99a0000-0000-4000-8000-00000000a990"


def tenant_ids(count: int) -> list[str]:
    """`count` distinct tenant GUIDs."""
    return [str(uuid.UUID(int=(0xA << 124) + i)) for i in range(count)]


def directory(served: Served) -> TenantDirectory:
    """A directory whose credentials are never used (the lookup is what is measured)."""
    return TenantDirectory(
        home_credential=None,  # type: ignore[arg-type]
        home_tenant_id=None,
        served=served,
        cross_tenant_credential=lambda tenant: None,  # type: ignore[arg-type,return-value]
        pacer=lambda tenant: WritePacer(49, 20.0),
    )


def per_call_us(directory: TenantDirectory, tenants: list[str], rounds: int) -> float:
    """Microseconds per `tenant()` call, every tenant built first."""
    for tenant in tenants:
        directory.tenant(tenant)
    started = time.perf_counter()
    for _ in range(rounds):
        for tenant in tenants:
            directory.tenant(tenant)
    return (time.perf_counter() - started) / (rounds * len(tenants)) * 1e6


def measure(connection_string: str, count: int, refresh: float) -> dict[str, Any]:
    """Every figure of the module docstring, on a fresh registry table of `count` tenants."""
    table_name = "benchtenants" + uuid.uuid4().hex[:8]
    service = TableServiceClient.from_connection_string(connection_string)
    table = service.create_table(table_name)
    try:
        ids = tenant_ids(count)
        registry = Registry(table)
        for i, tenant in enumerate(ids):
            registry.add(tenant, f"Customer {i:04d}", reserve=i % 50)
        env = {"AzureWebJobsStorage": connection_string, "MULTITENANT_APP_CLIENT_ID": APP,
               "REGISTRY_TABLE_NAME": table_name, "REGISTRY_REFRESH_SECONDS": str(refresh)}  # fmt: skip
        served = build_served(Settings.model_validate(env))
        assert served.registry is not None

        started = time.perf_counter()
        served.lookup(ids[0])  # the first lookup reads the whole registry (and builds the table client)
        read_ms = (time.perf_counter() - started) * 1000
        rows = [dict(row) for row in table.query_entities(f"PartitionKey eq '{PARTITION}'")]
        gc.collect()
        tracemalloc.start()
        entries = {entry.tenant_id: entry for entry in map(from_entity, rows)}  # what the registry keeps
        registry_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(entries) == count

        via_registry = per_call_us(directory(served), ids, rounds=20)
        via_setting = per_call_us(directory(Served(ids, None, paused_recheck_seconds=refresh)), ids, rounds=20)

        reads = [_timed_read(served, ids[-1], refresh) for _ in range(3)]
        watched = directory(served)
        watched.tenant(ids[1])
        registry.set_paused(ids[1], paused=True)
        changed = time.perf_counter()
        while True:
            try:
                watched.tenant(ids[1])
            except DeferralRequested:
                break
            time.sleep(0.01)
        applied_s = time.perf_counter() - changed
        return {
            "tenants": count,
            "refreshSeconds": refresh,
            "firstReadMs": round(read_ms, 1),
            "rereadMs": [round(ms, 1) for ms in reads],
            "registryKiB": round(registry_bytes / 1024, 1),
            "lookupUsViaRegistry": round(via_registry, 2),
            "lookupUsViaSetting": round(via_setting, 2),
            "changeAppliedSeconds": round(applied_s, 2),
            "changeBoundSeconds": round(refresh + max(reads) / 1000, 2),
        }
    finally:
        service.delete_table(table_name)


def _timed_read(served: Served, tenant: str, refresh: float) -> float:
    """One re-read: wait out the interval, then time the lookup that reads (ms)."""
    time.sleep(refresh)
    started = time.perf_counter()
    served.lookup(tenant)
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> None:
    """Run against a fresh local Azurite (or $AzureWebJobsStorage) and print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.registry", description=main.__doc__)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--refresh", type=float, default=2.0, help="REGISTRY_REFRESH_SECONDS for the run")
    args = parser.parse_args(argv)
    if connection := os.environ.get("AzureWebJobsStorage"):  # noqa: SIM112 - the Functions setting's exact name
        print(json.dumps(measure(connection, args.tenants, args.refresh)))
        return
    with Azurite() as azurite:
        print(json.dumps(measure(azurite.connection_string, args.tenants, args.refresh)))


if __name__ == "__main__":
    main()
