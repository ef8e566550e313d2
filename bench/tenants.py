"""Tenants (docs/tenants.md): several tenants on one queue, one of them in a 429 storm; what 50 tenants cost.

Drains: one runner process (the queue concurrency infra deploys for several tenants: 16 + 8 = 24
invocations at once) drives the real
`function_app`; every customer tenant's token comes from the Entra emulator (HTTPS, the production
`ClientAssertionCredential`), and the Graph simulator keeps a store and a write limit per tenant.
Intune's 100 writes / 20 s per tenant is scaled to 50 / 10 s (the same 5 writes/s, a window half as
long), with the infra's budget for one instance (49). In the storm, tenant C's Graph limit is a tenth
of that (other tools keep it busy) while the function still paces it at 49, so C meets 429s with
Retry-After throughout; the storm is lifted once A and B are done, so C drains and nothing is left.

Cost: the handler in a fresh process with 1 or 50 served tenants, messages round-robin over them.

`python -m bench.tenants [--quick]` runs these alone and rewrites the "Tenants" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cost import python_for, services, worker
from bench.goodput import app_env, drain_with_workers, infra_budget, tenant_queue
from devstack.azurite import Azurite
from devstack.entra_emulator import EXCHANGE_AUDIENCE, EntraEmulator
from devstack.identity_emulator import SYSTEM_ASSIGNED_CLIENT_ID
from devstack.stack import MULTITENANT_QUEUE_SETTINGS

REPO = Path(__file__).resolve().parent.parent
TENANT_IDS = tuple(f"7e000000-0000-4000-8000-{i:012x}" for i in range(1, 51))
A, B, C = TENANT_IDS[:3]
LIMIT, WINDOW = 50, 10.0


@dataclass(frozen=True)
class TenantDrain:
    """Backlogs per tenant (A, B, C) on one queue; `storm_limit`: C's Graph limit until A and B are done."""

    name: str
    backlogs: tuple[int, int, int]
    storm_limit: int | None = None
    write_limit: int = LIMIT
    window_s: float = WINDOW

    @property
    def budget(self) -> int:
        """Each tenant's pacing: the infra's rule for one instance."""
        return infra_budget(self.write_limit, 1)


def scenarios(*, quick: bool) -> list[TenantDrain]:
    """Mixed backlogs, then the storm."""
    scale = 1 if quick else 2
    return [
        TenantDrain("three tenants, mixed backlogs", (150 * scale, 100 * scale, 125 * scale)),
        TenantDrain("three tenants, C in a 429 storm", (125 * scale, 125 * scale, 40), storm_limit=LIMIT // 10),
    ]


def drain(azurite: Azurite, scenario: TenantDrain, log_dir: Path) -> dict[str, Any]:
    """Fill one queue with the three tenants' messages in random order and drain it with one runner process."""
    tenants = (A, B, C)
    with tenant_queue(azurite, tenants, scenario.backlogs, write_limit=scenario.write_limit,
                      window_s=scenario.window_s, storm_limit=scenario.storm_limit) as queue:  # fmt: skip
        env = {
            **app_env(azurite, queue.graph.base_url, queue.identity, queue.names, budget=scenario.budget,
                      window_s=scenario.window_s),
            "HOME_TENANT_ID": queue.identity.tenant_id,
            "SERVED_TENANT_IDS": ",".join(tenants),
            "MULTITENANT_APP_CLIENT_ID": queue.entra.app_client_id,
            **MULTITENANT_QUEUE_SETTINGS,
            **queue.entra.env(),
        }  # fmt: skip
        started = time.monotonic()
        reports = drain_with_workers(env, scenario.name, 1, log_dir)
        elapsed = time.monotonic() - started
        outcomes, poisoned = queue.outcomes()
        stats, log = queue.graph.stats(), queue.graph.requests()
        tokens = {"entra": queue.entra.stats()["issued"], "identity": queue.identity.tokens_by_resource()}
    return _summarise(
        scenario=scenario, sent=queue.sent, outcomes=outcomes, poisoned=poisoned, stats=stats, log=log,
        tokens=tokens, reports=reports, elapsed=elapsed, lifted=queue.lifted[:1],
    )  # fmt: skip


def _summarise(
    *,
    scenario: TenantDrain,
    sent: dict[str, str],
    outcomes: list[dict[str, Any]],
    poisoned: int,
    stats: dict[str, Any],
    log: list[dict[str, Any]],
    tokens: dict[str, Any],
    reports: list[dict[str, Any]],
    elapsed: float,
    lifted: list[float],
) -> dict[str, Any]:
    limit_rate = scenario.write_limit / scenario.window_s
    writes = {t: sorted(r["monotonic"] for r in log if r["method"] == "PATCH" and r["status"] == 200
                        and r["tenantId"] == t) for t in (A, B, C)}  # fmt: skip
    busy_until = lifted[0] if lifted else min(times[-1] for times in writes.values())
    first = min(times[0] for times in writes.values())
    together = sum(first <= w <= busy_until for times in writes.values() for w in times)
    per_tenant = {}
    for label, tenant in zip("ABC", (A, B, C), strict=True):
        times = writes[tenant]
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        counts = stats["byTenant"].get(tenant, {})
        per_tenant[label] = {
            "backlog": sum(1 for t in sent.values() if t == tenant),
            "writes": len(times),
            "goodput": (len(times) - 1) / span / limit_rate if span else 0.0,
            "throttled": counts.get("throttled", 0),
            "earlyRetries": counts.get("earlyRetries", 0),
            "peakWindowWrites": counts.get("peakWindowWrites", 0),
            "entraTokens": tokens["entra"].get(tenant, 0),
        }
    wrong_tenant = sum(
        1 for o in outcomes if o["status"] == "succeeded" and o["target"]["tenantId"] != sent.get(o["messageId"])
    )
    outcome_ids = Counter(o["messageId"] for o in outcomes)
    runner = reports[0]["runner"]
    return {
        "scenario": {**asdict(scenario), "budget": scenario.budget},
        "perTenant": per_tenant,
        "aggregateGoodput": (together - 1) / (busy_until - first) / (3 * limit_rate) if busy_until > first else 0.0,
        "aggregateSeconds": busy_until - first,
        "stormLiftedAfterSeconds": lifted[0] - first if lifted else None,
        "outcomes": len(outcomes),
        "outcomeStatuses": dict(Counter(o["status"] for o in outcomes)),
        "lost": len(set(sent) - set(outcome_ids)),
        "duplicateOutcomes": sum(n - 1 for n in outcome_ids.values()),
        "poisoned": poisoned,
        "wrongTenant": wrong_tenant,
        "crossTenant": stats["crossTenant"],
        "identityTokens": tokens["identity"],
        "invocations": runner["invocations"],
        "deferralsOrRetries": runner["invocations"] - len(outcomes),
        "cpuPerMessageMs": reports[0]["cpuSeconds"] / len(outcomes) * 1000 if outcomes else 0.0,
        "elapsedSeconds": elapsed,
    }


COST_VARIANTS = {"1": (1, ""), "50": (50, ""), "1, Session.request": (1, "session-request")}
"""Served tenants and worker mode: as deployed with 1 and 50 tenants, and 1 tenant as sent before this change."""


def cost_at_scale(messages: int, rounds: int) -> dict[str, Any]:
    """CPU per message, memory per tenant and token requests per `COST_VARIANTS`, rounds interleaved."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in COST_VARIANTS}
    for _ in range(rounds):
        for name, (n, mode) in COST_VARIANTS.items():
            served = TENANT_IDS[:n]
            with (
                services() as loopback,
                EntraEmulator(loopback.identity.signing_key, trusted_identity=SYSTEM_ASSIGNED_CLIENT_ID,
                              consented_tenants=served) as entra,
            ):  # fmt: skip
                env = loopback.env(
                    SERVED_TENANT_IDS=",".join(served), MULTITENANT_APP_CLIENT_ID=entra.app_client_id, **entra.env()
                )
                argv = ["tenants", "--messages", str(messages), "--mode", mode]
                result = worker(python_for("certstate"), argv, env)
                result["entraTokenRequests"] = sum(entra.stats()["requests"].values())
                result["exchangeTokens"] = loopback.identity.tokens_by_resource().get(EXCHANGE_AUDIENCE, 0)
                result["identityTokenRequests"] = loopback.identity.token_requests
                result["graphConnections"] = loopback.graph.connections
            runs[name].append(result)
    return {name: _pool(results) for name, results in runs.items()}


def _pool(results: list[dict[str, Any]]) -> dict[str, Any]:
    samples = [x for r in results for x in r["cpuSamplesMs"]]
    return {
        "rounds": len(results),
        "messages": sum(r["messages"] for r in results),
        "cpuMedianMs": statistics.median(samples),
        "cpuMeanMs": statistics.fmean(samples),
        "bestRoundMedianMs": min(r["cpuMedianMs"] for r in results),
        "bytesPerTenant": statistics.median(r["bytesPerTenant"] for r in results),
        "peakRssOneTenantMb": statistics.median(r["peakRssOneTenantMb"] for r in results),
        "peakRssMb": statistics.median(r["peakRssMb"] for r in results),
        "entraTokenRequests": max(r["entraTokenRequests"] for r in results),
        "exchangeTokens": max(r["exchangeTokens"] for r in results),
        "identityTokenRequests": max(r["identityTokenRequests"] for r in results),
        "graphConnections": max(r["graphConnections"] for r in results),
        "statuses": dict(sum((Counter(r["statuses"]) for r in results), Counter())),
        "calibrationMs": statistics.median(r["calibrationMs"] for r in results),
    }


def run(*, quick: bool, log_dir: Path) -> dict[str, Any]:
    """Every tenant benchmark: the drains, then the cost at 1 and 50 tenants."""
    with Azurite() as azurite:
        drains = []
        for scenario in scenarios(quick=quick):
            print(f"[bench]   {scenario.name}: backlogs {scenario.backlogs}", flush=True)
            result = drain(azurite, scenario, log_dir)
            each = ", ".join(f"{k} {v['goodput']:.1%}" for k, v in result["perTenant"].items())
            print(f"[bench]     aggregate {result['aggregateGoodput']:.1%}, {each}", flush=True)
            drains.append(result)
    cost = cost_at_scale(messages=500 if quick else 1500, rounds=1 if quick else 3)
    return {"drains": drains, "cost": cost}


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.tenants`: run the tenant benchmarks and rewrite their section of docs/benchmarks.md."""
    from bench.markdown import splice_file  # noqa: PLC0415
    from bench.tenants_report import tenants_blocks  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m bench.tenants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller backlogs, one cost round")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--rerender", action="store_true", help="write the section again from the saved results")
    args = parser.parse_args(argv)
    raw = REPO / "bench" / "results" / "tenants.json"
    if args.rerender:
        splice_file(args.output, tenants_blocks(json.loads(raw.read_text(encoding="utf-8"))))
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as logs:
        results = run(quick=args.quick, log_dir=Path(logs))
    results["command"] = ".venv/bin/python -m bench.tenants" + (" --quick" if args.quick else "")
    results["durationSeconds"] = time.monotonic() - started
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1), encoding="utf-8")
    splice_file(args.output, tenants_blocks(results))
    print(f"[bench] rewrote the figures of the Tenants section of {args.output} and {raw}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
