"""The blocks of the "Tenants" section of docs/benchmarks.md, from `bench.tenants.run` results."""

# ruff: noqa: RUF001 - the tables are prose; their multiplication and dash signs are meant

from __future__ import annotations

from typing import Any

from bench.markdown import Blocks, ms, ok, pct, provenance, table

TARGET = 0.95
CPU_TARGET_MS = 1.0


def tenants_blocks(results: dict[str, Any]) -> Blocks:
    """The tenant drains, the targets, and the cost at 1 and 50 tenants."""
    drains, cost = results["drains"], results["cost"]
    source = provenance(results, cost["1"]["calibrationMs"])
    rows = []
    for d in drains:
        t = d["perTenant"]
        rows.append([
            d["scenario"]["name"],
            " / ".join(str(t[k]["backlog"]) for k in "ABC"),
            f"**{pct(d['aggregateGoodput'])}**",
            *(pct(t[k]["goodput"]) for k in "ABC"),
            " / ".join(str(t[k]["throttled"]) for k in "ABC"),
            " / ".join(str(t[k]["earlyRetries"]) for k in "ABC"),
            f"{d['lost']}/{d['poisoned']}/{d['duplicateOutcomes']}",
            str(d["wrongTenant"] + d["crossTenant"]),
            " / ".join(str(t[k]["entraTokens"]) for k in "ABC"),
            str(d["deferralsOrRetries"]),
            ms(d["cpuPerMessageMs"], 1),
        ])  # fmt: skip
    header = ["drain", "backlog A / B / C", "aggregate", "A", "B", "C", "429s A / B / C", "early retries A / B / C",
              "lost / poisoned / duplicate", "wrong tenant", "Entra tokens A / B / C", "deferrals + retries",
              "CPU per message, whole runner"]  # fmt: skip
    mixed, storm = drains[0], drains[-1]
    clean = all(d["lost"] == d["poisoned"] == d["duplicateOutcomes"] == 0 for d in drains)
    no_early = all(v["earlyRetries"] == 0 for d in drains for v in d["perTenant"].values())
    storm_ok = min(storm["perTenant"][k]["goodput"] for k in "AB")
    early = sum(v["earlyRetries"] for d in drains for v in d["perTenant"].values())
    targets = [
        ["aggregate goodput ≥ 95 % of 3 × the limit (mixed backlogs)", pct(mixed["aggregateGoodput"]),
         ok(mixed["aggregateGoodput"] >= TARGET)],
        ["C in a 429 storm: A and B each ≥ 95 % of their limit",
         f"{pct(storm['perTenant']['A']['goodput'])} and {pct(storm['perTenant']['B']['goodput'])} "
         f"({storm['perTenant']['C']['throttled']} 429s for C)", ok(storm_ok >= TARGET)],
        ["zero early retries, per tenant", str(early), ok(no_early)],
        ["0 lost, 0 duplicate outcomes", f"{sum(d['lost'] for d in drains)} lost, "
         f"{sum(d['duplicateOutcomes'] for d in drains)} duplicate, {sum(d['poisoned'] for d in drains)} poisoned",
         ok(clean)],
        [f"CPU per message with 50 tenants ≤ {CPU_TARGET_MS:g} ms", ms(cost["50"]["cpuMedianMs"], 3),
         ok(cost["50"]["cpuMedianMs"] <= CPU_TARGET_MS)],
    ]  # fmt: skip
    cost_rows = [
        [label, f"**{ms(c['cpuMedianMs'], 3)}**", ms(c["bestRoundMedianMs"], 3),
         f"{c['bytesPerTenant'] / 1024:.0f} KiB" if c.get("bytesPerTenant") else "–", f"{c['peakRssMb']:.0f} MB",
         str(c["entraTokenRequests"]), str(c["exchangeTokens"]), str(c["graphConnections"]),
         f"{c['rounds']} × {c['messages'] // c['rounds']}"]
        for label, c in (("1", cost["1"]), ("50", cost["50"]),
                         ("1, each PATCH through `Session.request` (before)", cost["1, Session.request"]))
    ]  # fmt: skip
    return {
        "tenants": [source, "", *table(header, rows)],
        "tenants-targets": [source, "", *table(["target", "measured", ""], targets)],
        "tenants-cost": [
            source,
            "",
            *table(
                [
                    "served tenants",
                    "CPU median",
                    "best round's median",
                    "memory per tenant",
                    "peak RSS",
                    "Entra token requests",
                    "exchange tokens (identity endpoint)",
                    "Graph connections",
                    "messages",
                ],
                cost_rows,
            ),
        ],
    }
