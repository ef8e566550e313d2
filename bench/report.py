"""The figures of docs/benchmarks.md: the tables of one `python -m bench` run, for its marked blocks.

The document is written by hand; each block (bench/markdown.py) holds one table of figures and the
command and date of the run that produced them. `write` replaces the blocks a run measured and leaves
the rest, the prose beside them included, as it is: a run that changes what the prose says calls for
an edit of the prose, which the diff of the blocks shows.
"""

# ruff: noqa: RUF001 - the tables are prose; their multiplication, minus and dash signs are meant

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.markdown import Blocks, ms, ok, pct, provenance, splice_file, table

CERTSTATE = "certstate"
SDK = "msgraph-beta-sdk"


def _scenario_label(g: dict[str, Any]) -> str:
    return f"{g['scenario']['name']}: {_rate(g)}"


def _named(goodput: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((g for g in goodput if g["scenario"]["name"] == name), None)


def _rule(write_limit: int, instances: int) -> tuple[int, int]:
    """(N, B) as the template derives them with no reserve: N = min(instances, A // 2), B = A // N - 1."""
    n = max(1, min(instances, write_limit // 2))
    return n, max(1, write_limit // n - 1)


def _rate(g: dict[str, Any]) -> str:
    s = g["scenario"]
    return f"{s['processes']} × {s['budget']}/{s['window_s']:g} s vs {s['write_limit']}/{s['window_s']:g} s"


def _rule_text(g: dict[str, Any]) -> str:
    """The rule worked out for a drain (`floor(L / N) - 1 = B`), or a note if its budget came from another rule."""
    s = g["scenario"]
    n, b = _rule(s["write_limit"], s["processes"])
    if n != s["processes"] or b != s["budget"]:
        return f"{s['budget']}, from an older rule; the current one gives {b}"
    return f"⌊{s['write_limit']} / {n}⌋ − 1 = {b}"


def _headroom_ms(g: dict[str, Any]) -> float:
    """How much later than the write `L` places after it one write must be delayed to be refused (one process)."""
    s = g["scenario"]
    return float(s["window_s"] * (s["write_limit"] - s["budget"]) / s["budget"] * 1000)


@dataclass(frozen=True)
class Run:
    """One run's results as the sections read them: the figures more than one section quotes, looked up once."""

    results: dict[str, Any]
    goodput: list[dict[str, Any]]
    cost: dict[str, Any]
    cold: dict[str, Any]
    package: dict[str, Any]
    profile: dict[str, Any]
    ours: dict[str, Any] | None
    """certstate's cost per message (section 2), the reference every ratio is taken to."""
    sdk: dict[str, Any] | None
    infra: dict[str, Any] | None
    pair: dict[str, Any] | None
    real_infra: dict[str, Any] | None
    """The infra budget drained at the real 100/20 s limit (`--extended`), the deployed case."""
    real_pair: dict[str, Any] | None
    phases: dict[str, float]
    """Profiled ms per message by phase, after the change (section 5); empty without a profile."""

    @classmethod
    def of(cls, results: dict[str, Any]) -> Run:
        goodput = results.get("goodput", [])
        cost = results.get("cost", {})
        profile = results.get("profile", {})
        return cls(
            results=results,
            goodput=goodput,
            cost=cost,
            cold=results.get("cold", {}),
            package=results.get("package", {}),
            profile=profile,
            ours=cost.get(CERTSTATE),
            sdk=cost.get(SDK),
            infra=_named(goodput, "one process, infra budget"),
            pair=_named(goodput, "two processes, infra budget"),
            real_infra=_named(goodput, "one process, 100/20 s, infra budget"),
            real_pair=_named(goodput, "two processes, 100/20 s, infra budget"),
            phases=(profile.get("after") or {}).get("phasesMsPerMessage", {}),
        )


def blocks(results: dict[str, Any]) -> Blocks:
    """Every block this run has figures for, by name, in the document's order."""
    run = Run.of(results)
    source = [provenance(results)]
    out: Blocks = {"run": [*source, "", _machine(results)], "targets": [*source, "", *_targets(run)]}
    if run.goodput:
        out["goodput"] = [*source, "", *_drain_table(run.goodput)]
    if run.cost:
        calibration = (run.ours or {}).get("calibrationMs")
        out["cost"] = [provenance(results, calibration), "", *_cost_table(run)]
        out["tokens"] = [*source, "", *_tokens_table(run)]
    if run.cold:
        out["cold"] = [*source, "", *_cold_table(run)]
    if run.package:
        out["package"] = [*source, "", *_package_table(run)]
    if run.profile.get("after") and run.profile.get("before"):
        out["profile"] = [*source, "", *_profile_tables(run)]
    if "telemetry" in results:
        out.update(telemetry_blocks({"command": results["command"], "date": results["date"], **results["telemetry"]}))
    if "tenants" in results:
        from bench.tenants_report import tenants_blocks  # noqa: PLC0415 - bench.tenants imports it alone

        out.update(tenants_blocks({**results["tenants"], "command": results["command"], "date": results["date"]}))
    return out


def write(results: dict[str, Any], document: Path) -> None:
    """Replace the blocks of `document` this run has figures for."""
    splice_file(document, blocks(results))


def _machine(results: dict[str, Any]) -> str:
    m = results["machine"]
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memoryGb']} GB; {m['os']}; Python {m['python']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". {'A quick run: fewer messages and repeats.' if results['quick'] else 'A full run.'}"
        + f" {results['durationSeconds'] / 60:.1f} min."
    )


# -- targets --------------------------------------------------------------------------------------------------


def _targets(run: Run) -> list[str]:
    """One row per target, each with what was measured and whether it was met; a target with no figures is left out."""
    memory, import_time = _cold_targets(run)
    rows = [
        *_goodput_targets(run),
        _throttling_target(run),
        *_drain_targets(run),
        _cpu_target(run),
        _sdk_target(run),
        memory,
        _token_target(run),
        _connection_target(run),
        import_time,
        _package_target(run),
    ]
    return table(["target", "measured", ""], [row for row in rows if row])


def _goodput_targets(run: Run) -> list[list[str]]:
    rows: list[list[str]] = []
    # The deployed case is the real 100/20 s limit; the scaled 25/5 s drains stand in when it was not run.
    for label, g in (("one process", run.real_infra or run.infra), ("two processes", run.real_pair or run.pair)):
        if g is None:
            continue
        scale = "real limit" if g["scenario"]["write_limit"] == 100 else "scaled limit"
        rows.append(
            [
                f"goodput ≥ 95 % of the write limit: {label}, infra budget ({scale})",
                f"{pct(g['goodput'])} first→last write, {pct(g['goodputMiddle90'])} without ramp and tail "
                f"({_rate(g)}: {pct(g['budgetShare'], 0)} of the limit by arithmetic)",
                ok(g["goodput"] >= 0.95),
            ]
        )
    return rows


def _throttling_target(run: Run) -> list[str] | None:
    paced = [
        g for g in run.goodput if g["scenario"]["processes"] * g["scenario"]["budget"] < g["scenario"]["write_limit"]
    ]
    if not paced:
        return None
    worst = max(paced, key=lambda g: g["share429"])
    return [
        "429s ≤ 2 % of requests (every drain whose budgets sum below the limit)",
        f"at most {pct(worst['share429'])}",
        ok(worst["share429"] <= 0.02),
    ]


def _drain_targets(run: Run) -> list[list[str]]:
    goodput = run.goodput
    if not goodput:
        return []
    early = sum(g["earlyRetries"] for g in goodput)
    lost = sum(g["lost"] + g["poisoned"] for g in goodput)
    return [
        ["zero early retries", f"{early} in {len(goodput)} drains", ok(early == 0)],
        [
            "nothing lost or poisoned",
            f"{lost} lost or poisoned, {sum(g['duplicateOutcomes'] for g in goodput)} duplicate outcomes, "
            f"{sum(g['outcomes'] for g in goodput)} outcomes for {sum(g['scenario']['messages'] for g in goodput)}"
            " messages",
            ok(lost == 0),
        ],
    ]


def _cpu_target(run: Run) -> list[str] | None:
    ours = run.ours
    if not ours:
        return None
    best = ours.get("cpuBestRunMedianMs", ours["cpuMedianMs"])
    met_best = " (met in the best round)" if ours["cpuMedianMs"] > 1.0 >= best else ""
    return [
        "CPU per message ≤ 1 ms (median)",
        f"{ms(ours['cpuMedianMs'], 3)} over all rounds; {ms(best, 3)} in the least disturbed round",
        ok(ours["cpuMedianMs"] <= 1.0) + met_best,
    ]


def _sdk_target(run: Run) -> list[str] | None:
    ours, sdk = run.ours, run.sdk
    if not (ours and sdk):
        return None
    ratio = sdk.get("cpuRatioToReference") or sdk["cpuMedianMs"] / ours["cpuMedianMs"]
    return [f"≥ 10× below {SDK} (median CPU, paired by round)", f"{ratio:.1f}×", ok(ratio >= 10)]


def _cold_targets(run: Run) -> tuple[list[str] | None, list[str] | None]:
    """Peak memory and import time of a fresh process."""
    c = run.cold.get(CERTSTATE)
    if c is None:
        return None, None
    peak, seconds = c["peakRssMbMax"], c["importSeconds"]
    return (
        ["peak memory ≤ 60 MB (fresh process: import + first message)", f"{peak:.1f} MB", ok(peak <= 60)],
        ["import of function_app ≤ 0.5 s", f"{seconds:.3f} s (median of {c['runs']})", ok(seconds <= 0.5)],
    )


def _token_target(run: Run) -> list[str] | None:
    ours, goodput = run.ours, run.goodput
    if not ours:
        return None
    per_runner = max((g["tokenRequests"] / g["scenario"]["processes"] for g in goodput), default=None)
    return [
        "one token request per token lifetime per process",
        f"{ours['tokenRequests']} for {ours['handledPerRun']} messages"
        + ("" if per_runner is None else f"; {per_runner:g} per runner process"),
        ok(ours["tokenRequests"] == 1 and all(g["tokenRequests"] <= g["scenario"]["processes"] for g in goodput)),
    ]


def _connection_target(run: Run) -> list[str] | None:
    if not run.goodput:
        return None
    worst = max(run.goodput, key=lambda g: g["connections"] / g["scenario"]["processes"])
    per_process = worst["connections"] / worst["scenario"]["processes"]
    concurrency = worst["concurrencyPerProcess"]
    return [
        "TCP connections ≤ concurrency",
        f"at most {per_process:g} per runner process (concurrency {concurrency})",
        ok(per_process <= concurrency),
    ]


def _package_target(run: Run) -> list[str] | None:
    p = run.package.get(CERTSTATE)
    if p is None:
        return None
    return [
        "deployable package ≤ 40 MB",
        f"{p['sourceMb']:.1f} MB as uploaded (no .pyc); {p['withPycMb']:.1f} MB once compiled; "
        f"{p['zipMb']:.1f} MB zipped",
        ok(p["sourceMb"] <= 40) + ("" if p["withPycMb"] <= 40 else " (missed with .pyc)"),
    ]


# -- the tables of sections 1 to 5 --------------------------------------------------------------------------


def _drain_table(goodput: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            _scenario_label(g),
            pct(g["budgetShare"], 0),
            f"**{pct(g['goodput'])}**",
            pct(g["goodputMiddle90"]),
            pct(g["pacerEfficiency"]),
            f"{g['byStatus'].get('429', 0)} ({pct(g['share429'])})",
            str(g["earlyRetries"]),
            f"{g['peakWindowWrites']}",
            ms(g["closestCallMs"], 0),
            f"{g['lost']}/{g['poisoned']}/{g['duplicateOutcomes']}",
            f"{g['tokenRequests']}/{g['connections']}",
            ms(g["cpuPerMessageMs"], 1),
            f"{g['drainSeconds']:.0f} s",
        ]
        for g in goodput
    ]
    return table(
        [
            "drain",
            "budget share",
            "goodput",
            "middle 90 %",
            "pacer efficiency",
            "429s",
            "early retries",
            "peak writes in a window",
            "closest call",
            "lost / poisoned / duplicate",
            "tokens / connections",
            "CPU per message, whole runner",
            "drain",
        ],
        rows,
    )


def _cost_table(run: Run) -> list[str]:
    ours = run.ours
    rows = []
    for name, c in run.cost.items():
        ratio = c.get("cpuRatioToReference") or (c["cpuMedianMs"] / ours["cpuMedianMs"] if ours else None)
        rows.append(
            [
                name,
                f"**{ms(c['cpuMedianMs'], 3)}**",
                ms(c.get("cpuBestRunMedianMs"), 3),
                ms(c["cpuMeanMs"], 3),
                ms(c["cpuP90Ms"], 3),
                ms(c["wallMedianMs"], 3),
                "–" if ratio is None else f"{ratio:.1f}×",
                f"{c['tokenRequestsPer1000']:.2f}",
                f"{c['connectionsPer1000']:.2f}",
                f"{c['peakRssMb']:.0f} MB",
                f"{c['runs']} × {c['messagesPerRun']}",
            ]
        )
    return table(
        [
            "variant",
            "CPU median",
            "best round's median",
            "CPU mean",
            "CPU p90",
            "wall median",
            "CPU vs certstate (paired)",
            "token requests / 1000",
            "TCP connections / 1000",
            "peak RSS",
            "processes × messages",
        ],
        rows,
    )


def _tokens_table(run: Run) -> list[str]:
    rows = [
        [name, f"{c['tokenRequests']}", f"{c['connections']}", str(c["handledPerRun"]), "1 (sequential)"]
        for name, c in run.cost.items()
    ]
    rows += [
        [
            f"runner: {_scenario_label(g)}",
            f"{g['tokenRequests']}",
            f"{g['connections']}",
            str(g["invocations"]),
            f"{g['concurrencyPerProcess']} per process × {g['scenario']['processes']}",
        ]
        for g in run.goodput
    ]
    return table(["run (one process each)", "token requests", "TCP connections", "messages", "concurrency"], rows)


def _cold_table(run: Run) -> list[str]:
    rows = [
        [
            name,
            f"{c['importSeconds']:.3f} s",
            f"{c['firstMessageSeconds']:.3f} s",
            f"{c['processSeconds']:.2f} s",
            f"{c['peakRssAfterImportMb']:.1f} MB",
            f"{c['peakRssMbMax']:.1f} MB",
            str(c["modules"]),
        ]
        for name, c in run.cold.items()
    ]
    header = ["variant", "import", "first message", "whole process (interpreter start to exit)",
              "peak RSS after import", "peak RSS after first message", "modules loaded"]  # fmt: skip
    return table(header, rows)


def _package_table(run: Run) -> list[str]:
    rows = [
        [
            name,
            f"**{p['sourceMb']:.1f} MB**",
            f"{p['withPycMb']:.1f} MB",
            "–" if p.get("zipMb") is None else f"{p['zipMb']:.1f} MB",
            ", ".join(f"{x['name']} {x['mb']:.1f}" for x in p["largest"][:5]),
        ]
        for name, p in run.package.items()
    ]
    return table(["variant", "as uploaded", "compiled", "zip", "largest (MB, without .pyc)"], rows)


def _profile_tables(run: Run) -> list[str]:
    after, before = run.profile["after"], run.profile["before"]
    phases = [
        [label, ms(before["phasesMsPerMessage"].get(label), 3), ms(after["phasesMsPerMessage"].get(label), 3)]
        for label in after["phasesMsPerMessage"]
    ]
    top = [
        [f"`{t['function']}`", str(t["calls"]), ms(t["selfMsPerMessage"], 3), ms(t["cumMsPerMessage"], 3)]
        for t in after["top"][:10]
    ]
    return [
        f"{after['messages']} messages profiled; blocked in `recv` {ms(after.get('waitingMsPerMessage'), 3)} per "
        "message (taken out of the phases).",
        "",
        *table(["phase (cumulative, profiled)", "before", "after"], phases),
        "",
        *table(["heaviest function by self time, after", "calls", "self per message", "cumulative per message"], top),
    ]


# -- 6. telemetry and the audit trail -------------------------------------------------------------------------


def telemetry_blocks(telemetry: dict[str, Any]) -> Blocks:
    """Section 6: the lean route, certstate bare, with telemetry, as deployed; the cold start; the package."""
    from bench.telemetry import AUDITED, AUDITED_TOGETHER, LEAN, OFF, TOGETHER  # noqa: PLC0415 - no cycle at import

    variants, cold = telemetry["cost"], telemetry["cold"]
    source = provenance(telemetry, variants[LEAN]["calibrationMs"])
    cost_rows = [
        [
            label if label.startswith("lean") else f"certstate, {label}",
            f"**{ms(v['cpuMedianMs'], 3)}**",
            ms(v["cpuBestRunMedianMs"], 3),
            ms(v["cpuP90Ms"], 3),
            ms(v["cpuMeanMs"], 3),
            ms(v["wallMedianMs"], 3),
            f"{v['cpuRatioToReference']:.2f}×",
            "–" if v.get("cpuRatioToBare") is None else f"{v['cpuRatioToBare']:.2f}×",
            f"{v['exportedPerMessage']:.1f} ({v.get('exportedBytesPerMessage', 0) / 1024:.1f} KiB)",
            f"{v['peakRssMb']:.0f} MB",
            f"{v['runs']} × {v['messagesPerRun']}",
        ]
        for label, v in variants.items()
    ]
    cold_rows = [
        [
            f"certstate, {label}",
            f"{c['importSeconds']:.3f} s",
            f"{c['importAppSeconds']:.3f} s",
            f"{c['firstMessageSeconds']:.3f} s",
            f"{c['peakRssAfterImportMb']:.1f} MB",
            f"{c['peakRssMb']:.1f} MB",
            str(c["modules"]),
        ]
        for label, c in cold.items()
    ]
    package = telemetry["package"]
    deployed, as_deployed = variants[AUDITED], cold[AUDITED]
    ratio, bare_ratio = deployed["cpuRatioToReference"], variants[OFF]["cpuRatioToReference"]
    added, together = deployed["cpuRatioToBare"] - 1, variants[AUDITED_TOGETHER]["cpuRatioToReference"]
    rss, seconds = as_deployed["peakRssMb"], as_deployed["importAppSeconds"]
    targets = [
        ["as deployed (telemetry + audit) ≤ 3× the lean route's CPU per message", f"{ratio:.2f}×", ok(ratio <= 3)],
        [
            f"the same, {TOGETHER} at once as the host runs them (to the lean route {TOGETHER} at once)",
            f"{together:.2f}×",
            ok(together <= 3),
        ],
        ["bare pipeline ≤ 2× the lean route", f"{bare_ratio:.2f}×", ok(bare_ratio <= 2)],
        ["telemetry and the audit trail together add ≤ 50 % to bare", f"+{added * 100:.0f} %", ok(added <= 0.5)],
        ["peak RSS as deployed after the first message ≤ 60 MB", f"{rss:.1f} MB", ok(rss <= 60)],
        [
            "import of function_app ≤ 0.5 s (after azure.functions, as the worker imports it)",
            f"{seconds:.3f} s; {as_deployed['importSeconds']:.3f} s with azure.functions (median of "
            f"{as_deployed['runs']})",
            ok(seconds <= 0.5),
        ],
    ]
    return {
        "telemetry": [
            source,
            "",
            *table(
                [
                    "variant",
                    "CPU median",
                    "best round's median",
                    "CPU p90",
                    "CPU mean (exporter batches in)",
                    "wall median",
                    "CPU vs lean (paired)",
                    "CPU vs bare (paired)",
                    "exported per message",
                    "peak RSS",
                    "processes × messages",
                ],
                cost_rows,
            ),
            "",
            *table(
                [
                    "cold start",
                    "import",
                    "of which function_app",
                    "first message",
                    "peak RSS after import",
                    "peak RSS after first message",
                    "modules loaded",
                ],
                cold_rows,
            ),
            "",
            f"Package with the runtime dependencies: **{package['sourceMb']:.1f} MB** as uploaded, "
            f"{package['withPycMb']:.1f} MB compiled, {package['zipMb']:.1f} MB zipped; largest (MB): "
            + ", ".join(f"{x['name']} {x['mb']:.1f}" for x in package["largest"][:6])
            + ".",
        ],
        "telemetry-targets": [source, "", *table(["target (issue 19)", "measured", ""], targets)],
        "table-writes": [source, "", *table_writes(telemetry["tableWrites"])],
        "pacing-claims": [source, "", *pacing_claims(telemetry["pacingClaims"])],
    }


def pacing_claims(claims: dict[str, Any]) -> list[str]:
    """CPU of one claim on the pacing table each way, and what a message carries of it at a tenant's full rate."""
    per = claims["writesPerClaim"]
    rows = [
        [label, f"**{ms(w['cpuMedianMs'], 3)}**", ms(w["cpuMedianMs"] / per, 3)] for label, w in claims["ways"].items()
    ]
    head = [
        "way of claiming write slots",
        "CPU per claim (median)",
        f"per message at a tenant's full rate ({claims['budget']}/{claims['windowSeconds']:g} s: {per} writes a claim)",
    ]
    return table(head, rows)


def table_writes(ways: dict[str, Any]) -> list[str]:
    """Each way of writing an outcome's rows (bench/tablewrites.py): CPU per write, and against the deployed one."""
    from bench.tablewrites import LEAN  # noqa: PLC0415 - the label

    deployed = ways[LEAN]["cpuMedianMs"]
    rows = [
        [label, f"**{ms(w['cpuMedianMs'], 3)}**", f"{w['cpuMedianMs'] / deployed:.2f}×"] for label, w in ways.items()
    ]
    return table(["way of writing an outcome's rows", "CPU per outcome (median)", "vs deployed"], rows)
