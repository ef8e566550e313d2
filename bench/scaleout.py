"""Scale-out: every tenant at its full write limit with 1, 2, 4 and 8 runner processes on one queue.

Each runner process stands for one Flex instance: `python -m bench.scaleout worker` runs the real
`function_app` under devstack's runner with the app settings infra deploys for N instances
(`devstack.stack.deployed_settings`: one budget per tenant for the deployment, the table of shared
budgets in Azurite, PYTHON_THREADPOOL_THREAD_COUNT 24 with the multi-tenant queue concurrency 16 + 8).
Azurite, the Graph simulator (a sliding-window limit per tenant, early retries counted after its
0.5 s in-flight grace), the identity and the Entra emulators run in this process or beside it.

Scenarios, at every process count:
- three tenants with mixed backlogs, Intune's 100 writes / 20 s scaled to 50 / 10 s (5 writes/s each);
- the same three with C in a 429 storm: C's Graph limit is a tenth while the function paces it at its
  full budget, so C meets 429s with Retry-After throughout; lifted once A and B are done;
- 50 tenants, each 50 writes / 400 s (a write every 8 s each, 6.25 writes/s together), so that the
  runners keep up on this machine's two shared cores, reading included: a runner reads and defers a
  shuffled backlog at about 20 messages a second, and at twice the rate a tenant's next message was
  often still unread when its slot came. What is measured is pacing, not CPU.

Reported as ratios and counts (no wall-clock speeds): each tenant's goodput while it has work, the
aggregate against N x limit, early retries, 429s of tenants not in a storm (caused by the budget
itself), lost / duplicate / poisoned outcomes, and store operations per write.

`python -m bench.scaleout [--quick] [--processes 1,2,4,8]` rewrites the "Scale-out" section of
docs/benchmarks.md and bench/results/scaleout.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from bench.goodput import drain_with_workers, tenant_queue
from bench.markdown import ok, pct, provenance, splice_file, table
from devstack.azurite import Azurite
from devstack.stack import deployed_settings

REPO = Path(__file__).resolve().parent.parent
TENANT_IDS = tuple(f"7e000000-0000-4000-8000-{i:012x}" for i in range(1, 51))
TARGET = 0.95


@dataclass(frozen=True)
class Drain:
    """Backlogs per tenant on one queue, each tenant's Graph limit, and a storm on the last tenant."""

    name: str
    backlogs: tuple[int, ...]
    write_limit: int = 50
    window_s: float = 10.0
    storm_limit: int | None = None

    @property
    def tenants(self) -> tuple[str, ...]:
        """The tenants the messages go to."""
        return TENANT_IDS[: len(self.backlogs)]


SLOWER_AT: Final = 8
"""From this many processes on, a drain's rate is halved (its window doubled) so that the runners keep up on
two shared cores: eight runners, Azurite and the simulator would otherwise measure CPU, not pacing."""


def at_scale(scenario: Drain, processes: int) -> Drain:
    """The drain as run with `processes` runner processes (the rate scaled down from `SLOWER_AT` on)."""
    return replace(scenario, window_s=scenario.window_s * 2) if processes >= SLOWER_AT else scenario


def scenarios(*, quick: bool) -> list[Drain]:
    """Mixed backlogs, the storm, and 50 tenants."""
    scale = 1 if quick else 2
    return [
        Drain("three tenants, mixed backlogs", (75 * scale, 50 * scale, 60 * scale)),
        Drain("three tenants, C in a 429 storm", (60 * scale, 60 * scale, 25), storm_limit=5),
        Drain("50 tenants", (12 * scale,) * 50, write_limit=50, window_s=400.0),
    ]


def drain(azurite: Azurite, scenario: Drain, processes: int, log_dir: Path) -> dict[str, Any]:
    """Fill one queue with every tenant's messages in random order and drain it with `processes` runners."""
    tenants = scenario.tenants
    with tenant_queue(azurite, tenants, scenario.backlogs, write_limit=scenario.write_limit,
                      window_s=scenario.window_s, storm_limit=scenario.storm_limit) as queue:  # fmt: skip
        input_name, result_name = queue.names
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "AzureWebJobsStorage": azurite.connection_string,
            "INPUT_QUEUE_NAME": input_name,
            "RESULT_QUEUE_NAME": result_name,
            "AUDIT_TABLE_NAME": "audit" + input_name[5:15],
            "GRAPH_PACING_TABLE_NAME": "pacing" + input_name[5:15],
            "GRAPH_BASE_URL": queue.graph.base_url,
            "CREDENTIAL_MODE": "managedIdentity",
            **deployed_settings(processes, write_limit=scenario.write_limit, window_s=scenario.window_s,
                                multitenant=True),
            "HOME_TENANT_ID": queue.identity.tenant_id,
            "SERVED_TENANT_IDS": ",".join(tenants),
            "MULTITENANT_APP_CLIENT_ID": queue.entra.app_client_id,
            **queue.identity.env(),
            **queue.entra.env(),
        }  # fmt: skip
        argv = [sys.executable, "-m", "bench.scaleout", "worker"]
        reports = drain_with_workers(env, f"{scenario.name}-{processes}", processes, log_dir, argv=argv, timeout=900)
        outcomes, poisoned = queue.outcomes()
        stats, log = queue.graph.stats(), queue.graph.requests()
    return summarise(scenario, processes, queue.sent, outcomes, poisoned, stats, log, reports, queue.lifted[:1])


def summarise(  # noqa: PLR0917 - one drain's evidence
    scenario: Drain,
    processes: int,
    sent: dict[str, str],
    outcomes: list[dict[str, Any]],
    poisoned: int,
    stats: dict[str, Any],
    log: list[dict[str, Any]],
    reports: list[dict[str, Any]],
    lifted: list[float],
) -> dict[str, Any]:
    """Goodput per tenant while it has work, the aggregate while all have work, and what went wrong."""
    limit_rate = scenario.write_limit / scenario.window_s
    tenants = scenario.tenants
    storm = tenants[-1] if scenario.storm_limit is not None else None
    writes = {t: sorted(r["monotonic"] for r in log if r["method"] == "PATCH" and r["status"] == 200
                        and r["tenantId"] == t) for t in tenants}  # fmt: skip
    steady = [t for t in tenants if t != storm]
    first = min(writes[t][0] for t in steady)
    busy_until = min(writes[t][-1] for t in steady)
    together = sum(first <= w <= busy_until for t in steady for w in writes[t])
    per_tenant = {}
    interval = scenario.window_s / (scenario.write_limit - 1)
    first_any = min(times[0] for times in writes.values() if times)
    for tenant in tenants:
        times = writes[tenant]
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        counts = stats["byTenant"].get(tenant, {})
        per_tenant[tenant] = {
            "writes": len(times),
            "goodput": (len(times) - 1) / span / limit_rate if span else 0.0,
            "throttled": counts.get("throttled", 0),
            "earlyRetries": counts.get("earlyRetries", 0),
            "peakWindowWrites": counts.get("peakWindowWrites", 0),
            "gapSeconds": sum(b - a - interval for a, b in itertools.pairwise(times) if b - a > 2 * interval),
            "firstWrite": times[0] - first_any if times else None,
            "timeline": [round(w - first_any, 3) for w in times],
        }
    outcome_ids = Counter(o["messageId"] for o in outcomes)
    pacing: Counter[str] = Counter()
    for report in reports:
        pacing.update(report["pacing"])
    successful = sum(len(times) for times in writes.values())
    store_ops = pacing["reads"] + pacing["writes"]
    seconds = max(max(times[-1] for times in writes.values() if times) - first, 1e-9)
    steady_goodputs = [per_tenant[t]["goodput"] for t in steady]
    return {
        "scenario": asdict(scenario) | {"tenants": len(tenants)},
        "processes": processes,
        "perTenant": per_tenant,
        "minGoodput": min(steady_goodputs),
        "aggregateGoodput": (together - 1) / (busy_until - first) / (len(steady) * limit_rate),
        "stormTenant": per_tenant[storm] if storm else None,
        "earlyRetries": stats["earlyRetries"],
        "budget429s": sum(per_tenant[t]["throttled"] for t in steady),
        "outcomes": len(outcomes),
        "outcomeStatuses": dict(Counter(o["status"] for o in outcomes)),
        "lost": len(set(sent) - set(outcome_ids)),
        "duplicateOutcomes": sum(n - 1 for n in outcome_ids.values()),
        "poisoned": poisoned,
        "successfulWrites": successful,
        "storeOps": store_ops,
        "storeOpsPerWrite": store_ops / successful if successful else 0.0,
        "storeOpsPerSecond": store_ops / seconds,
        "claimsPerWrite": pacing["claims"] / successful if successful else 0.0,
        "looksPerProcessSecond": pacing["looks"] / (processes * seconds),
        "pacing": dict(pacing),
        "invocations": sum(r["runner"]["invocations"] for r in reports),
        "threads": reports[0]["threads"],
        "stormLifted": bool(lifted),
    }


def passed(result: dict[str, Any]) -> bool:
    """Every target of the issue for one drain."""
    return bool(
        result["minGoodput"] >= TARGET
        and result["aggregateGoodput"] >= TARGET
        and result["earlyRetries"] == 0
        and result["budget429s"] == 0
        and result["lost"] == result["duplicateOutcomes"] == result["poisoned"] == 0
    )


# -- one runner process ---------------------------------------------------------------------------------------


def worker(idle_for: float, timeout: float) -> dict[str, Any]:
    """Run function_app under the runner until the queue stays empty; the runner's and the pacers' counts."""
    import function_app  # noqa: PLC0415 - the environment is in place
    from devstack.runner import Runner  # noqa: PLC0415
    from shared import wiring  # noqa: PLC0415
    from shared.graph.tenancy import TenantDirectory  # noqa: PLC0415

    runner = Runner(function_app.app, settings=dict(os.environ), host_json=REPO / "host.json")
    try:
        stats = runner.run_until_idle(idle_for=idle_for, timeout=timeout)
    finally:
        runner.stop()
    pacing: Counter[str] = Counter()
    directory = wiring.pipeline()._tenants
    assert isinstance(directory, TenantDirectory)
    for tenant in directory._tenants.values():  # the benchmark reads what the process built
        pacing.update(getattr(tenant.pacer, "counts", {}))
    return {
        "runner": {"invocations": stats.invocations, "succeeded": stats.succeeded, "failed": stats.failed,
                   "poisoned": stats.poisoned, "maxInFlight": stats.max_in_flight},
        "pacing": dict(pacing),
        "threads": runner.thread_count,
    }  # fmt: skip


# -- the report -----------------------------------------------------------------------------------------------


def block(results: dict[str, Any]) -> list[str]:
    """The `scaleout` block of docs/benchmarks.md: the run, then a row per drain (the prose beside it is by hand)."""
    header = ["scenario", "processes", "limit per tenant", "lowest tenant", "aggregate", "storm tenant",
              "early retries", "429s (budget)", "lost / dup / poisoned", "store ops per write", "claims per write",
              "turns per write", "looks per process-s", "fallbacks", "targets"]  # fmt: skip
    rows = []
    for r in results["drains"]:
        storm, scenario = r["stormTenant"], r["scenario"]
        rows.append([
            scenario["name"], str(r["processes"]), f"{scenario['write_limit']} / {scenario['window_s']:g} s",
            pct(r["minGoodput"]), pct(r["aggregateGoodput"]),
            f"{storm['writes']} writes, {storm['throttled']} 429s" if storm else "-",
            str(r["earlyRetries"]), str(r["budget429s"]), f"{r['lost']} / {r['duplicateOutcomes']} / {r['poisoned']}",
            f"{r['storeOpsPerWrite']:.2f}", f"{r['claimsPerWrite']:.2f}",
            f"{r['pacing'].get('turnWrites', 0) / max(r['successfulWrites'], 1):.2f}",
            f"{r['looksPerProcessSecond']:.2f}",
            str(r["pacing"].get("fallbacks", 0)), ok(passed(r)),
        ])  # fmt: skip
    run = f"{provenance(results)[:-2]}, {results['durationSeconds'] / 60:.0f} min.*"
    return [run, "", *table(header, rows)]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.scaleout`: run every drain at every process count and rewrite the section."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("worker", help="one runner process (started by the benchmark)")
    one.add_argument("--idle-for", type=float, default=3.0)
    one.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--quick", action="store_true", help="smaller backlogs")
    parser.add_argument("--processes", default="1,2,4,8", help="comma-separated process counts")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--merge", action="store_true", help="replace these drains in the saved results, then render")
    parser.add_argument("--rerender", action="store_true", help="write the section again from the saved results")
    args = parser.parse_args(argv)
    if args.command == "worker":
        print(json.dumps(worker(args.idle_for, args.timeout)), flush=True)
        return 0
    raw = REPO / "bench" / "results" / "scaleout.json"
    if args.rerender:
        splice_file(args.output, {"scaleout": block(json.loads(raw.read_text(encoding="utf-8")))})
        return 0
    started = time.monotonic()
    drains = []
    with Azurite() as azurite, tempfile.TemporaryDirectory() as logs:
        for scenario in scenarios(quick=args.quick):
            if args.only and args.only not in scenario.name:
                continue
            for processes in (int(n) for n in args.processes.split(",")):
                result = drain(azurite, at_scale(scenario, processes), processes, Path(logs))
                print(f"[bench] {scenario.name}, {processes} processes: lowest {result['minGoodput']:.1%}, "
                      f"aggregate {result['aggregateGoodput']:.1%}, early {result['earlyRetries']}, "
                      f"429s {result['budget429s']}, lost {result['lost']}, dup {result['duplicateOutcomes']}, "
                      f"poisoned {result['poisoned']}, store ops/write {result['storeOpsPerWrite']:.2f}, "
                      f"{'met' if passed(result) else 'MISSED'}", flush=True)  # fmt: skip
                drains.append(result)
    flags = (" --quick" if args.quick else "") + (f' --only "{args.only}"' if args.only else "")
    flags += (f" --processes {args.processes}" if args.processes != "1,2,4,8" else "") + (
        " --merge" if args.merge else ""
    )
    results = {
        "command": f".venv/bin/python -m bench.scaleout{flags}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "durationSeconds": time.monotonic() - started,
        "drains": drains,
    }
    raw.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and raw.exists():
        saved = json.loads(raw.read_text(encoding="utf-8"))
        fresh = {(d["scenario"]["name"], d["processes"]) for d in drains}
        kept = [d for d in saved["drains"] if (d["scenario"]["name"], d["processes"]) not in fresh]
        order = [s.name for s in scenarios(quick=args.quick)]
        saved["drains"] = sorted(kept + drains, key=lambda d: (order.index(d["scenario"]["name"]), d["processes"]))
        saved["durationSeconds"] += results["durationSeconds"]
        saved["command"] = f"{saved['command']}`, then `{results['command']}"
        saved["date"] = f"{saved['date']}, then {str(results['date']).removeprefix(saved['date'][:11])}"
        results = saved
    raw.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.merge or (not args.only and args.processes == "1,2,4,8"):
        splice_file(args.output, {"scaleout": block(results)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
