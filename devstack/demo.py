"""The run command: the whole pipeline on this machine, on real local parts, in about a minute.

Starts Azurite, the managed-identity emulator, the Entra ID emulator, the Graph simulator (Intune's
write limit scaled to 25 writes per 5 s so a short burst meets it) and the local runner driving
`function_app.py`; sends `examples/` (the seven seed routes, the doc page's twenty-four, the invalid
messages, a dry run) to the home tenant, plus a burst spread over three customer tenants: two side by
side, and one whose Graph limit is a fraction of that (other tools keep it busy), so it runs in a 429
storm while the other two are not slowed; shows each tenant's live progress; prints every outcome;
stops everything it started. Exit status 0 when every message got exactly one outcome with the status
its example promises.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from typing import Any, Literal, TextIO

from devstack.stack import REPO, LocalStack

EXAMPLES = REPO / "examples"
TENANTS = {
    "A": "a0000000-0000-4000-8000-00000000000a",
    "B": "b0000000-0000-4000-8000-00000000000b",
    "C": "c0000000-0000-4000-8000-00000000000c",
}
STORM = "C"


def _examples() -> list[tuple[str, bytes, str]]:
    """(name, queue text, expected status) for every example file."""
    found = [
        (p, "succeeded") for folder in ("seed-routes", "doc-routes") for p in sorted((EXAMPLES / folder).glob("*.json"))
    ]
    found += [(EXAMPLES / "dry-run.json", "validated")]
    found += [(p, "rejected") for p in sorted((EXAMPLES / "invalid").iterdir())]
    return [(path.stem, path.read_bytes(), status) for path, status in found]


def _burst(size: int) -> list[tuple[str, bytes, str]]:
    """`size` updates cycling over the seven seed routes and the three tenants, as busy producers would send them."""
    routes = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "seed-routes").glob("*.json"))]
    burst = []
    for i in range(size):
        tenant = list(TENANTS.values())[i % len(TENANTS)]
        message = {**routes[i % len(routes)], "correlationId": f"burst-{i:03d}", "tenantId": tenant}
        message["update"] = {"certificateIssuanceState": "issued", "lastCertificateStateChangeDateTime":
                             f"2026-11-27T14:{i // 60:02d}:{i % 60:02d}.1234567+00:00"}  # fmt: skip
        burst.append((f"burst-{i:03d}", json.dumps(message).encode(), "succeeded"))
    return burst


def run(burst: int, write_limit: int, window: float, out: TextIO) -> int:
    """Run the demo; the return value is the process exit status."""
    say = out.write
    say("Starting Azurite, the identity and Entra ID emulators, the Graph simulator and the local runner ...\n")
    storm_limit = max(1, write_limit // 6)
    tenants = {tenant: storm_limit if name == STORM else None for name, tenant in TENANTS.items()}
    with LocalStack(write_limit=write_limit, write_window_s=window, tenants=tenants) as stack:
        budget = stack.settings["GRAPH_WRITE_BUDGET"]
        say(f"  queues      {stack.settings['INPUT_QUEUE_NAME']} -> {stack.settings['RESULT_QUEUE_NAME']}\n")
        say(f"  Graph       {stack.graph.base_url} (write limit {write_limit} per {window:g} s per tenant)\n")
        say(f"  Entra ID    {stack.settings['AZURE_AUTHORITY_HOST']} (HTTPS; tokens for the customer tenants)\n")
        say(f"  tenants     home (the examples); A and B; C, whose Graph limit is {storm_limit} per {window:g} s: "
            "a 429 storm\n")  # fmt: skip
        say(f"  pacing      {budget} writes per {window:g} s per tenant and process (limit minus one, as deployed)\n\n")
        messages = _examples() + _burst(burst)
        expected = {}
        for name, body, status in messages:
            encoding: Literal["none", "base64"] = (
                "base64" if name.startswith("burst") and int(name[-3:]) % 2 else "none"
            )
            expected[stack.send(body, encoding=encoding)] = (name, status)
        say(f"Sent {len(messages)} messages ({len(messages) - burst} examples, a burst of {burst}; "
            "half the burst base64-encoded, the rest raw JSON).\n")  # fmt: skip
        sent = Counter(json.loads(body).get("tenantId") for name, body, _ in messages if name.startswith("burst"))
        stack.start_runner()
        outcomes = _follow(stack, len(messages), sent, out)
        say("\n")
        return _report(stack, outcomes, expected, out)


def _follow(
    stack: LocalStack, total: int, sent: Counter[str | None], out: TextIO, timeout: float = 300
) -> list[dict[str, Any]]:
    outcomes: list[dict[str, Any]] = []
    started = time.monotonic()
    live = out.isatty()
    last_line = 0.0
    while len(outcomes) < total and time.monotonic() - started < timeout:
        outcomes += stack.outcomes()
        now = time.monotonic()
        if live or now - last_line >= 2 or len(outcomes) >= total:
            counts = Counter(o["status"] for o in outcomes)
            graph = stack.graph.stats()
            done = Counter(o["target"]["tenantId"] for o in outcomes)
            per_tenant = "  ".join(
                f"{name} {done[tenant]}/{sent[tenant]} ({graph['byTenant'].get(tenant, {}).get('throttled', 0)} 429s)"
                for name, tenant in TENANTS.items()
            )
            line = (f"[{now - started:5.1f} s] outcomes {len(outcomes)}/{total}  "
                    + "  ".join(f"{s} {n}" for s, n in sorted(counts.items()))
                    + f"  | {per_tenant}")  # fmt: skip
            out.write(("\r" + line.ljust(150)) if live else line + "\n")
            out.flush()
            last_line = now
        time.sleep(0.2)
    return outcomes


def _report(stack: LocalStack, outcomes: list[dict[str, Any]], expected: dict[str, tuple[str, str]],
            out: TextIO) -> int:  # fmt: skip
    say = out.write
    by_id = Counter(o["messageId"] for o in outcomes)
    rows = []
    for outcome in sorted(outcomes, key=lambda o: expected.get(o["messageId"], ("~", ""))[0]):
        name, want = expected.get(outcome["messageId"], ("?", "?"))
        if name.startswith("burst"):
            continue
        error = outcome["error"] or {}
        detail = (error.get("details") or [{}])[0]
        why = f"{error.get('code', '')} {detail.get('field', '')}".strip()
        mark = "ok" if outcome["status"] == want else f"EXPECTED {want}"
        rows.append((name, outcome["status"], str(outcome["httpStatus"] or ""), why, mark))
    header = ("example", "status", "http", "error", "check")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
    for row in [header, *rows]:
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    burst = [o for o in outcomes if expected.get(o["messageId"], ("",))[0].startswith("burst")]
    say(f"burst of {len(burst)}: {_counted(burst)}\n")
    by_tenant = stack.graph.stats().get("byTenant", {})
    entra = stack.entra.stats()["issued"] if stack.entra else {}
    for name, tenant in TENANTS.items():
        mine = [o for o in burst if (o.get("target") or {}).get("tenantId") == tenant]
        counts = by_tenant.get(tenant, {})
        say(f"  tenant {name}: {_counted(mine)}; {counts.get('writes', 0)} writes, "
            f"{counts.get('throttled', 0)} answered 429, {counts.get('earlyRetries', 0)} early retries, "
            f"{entra.get(tenant, 0)} Entra token(s)\n")  # fmt: skip
    say("\n")

    graph, poisoned = stack.graph.stats(), stack.poisoned()
    missing = set(expected) - set(by_id)
    duplicated = [m for m, n in by_id.items() if n > 1]
    wrong = [o for o in outcomes if expected.get(o["messageId"], ("", "?"))[1] != o["status"]]
    say(f"Graph: {graph['writes']} writes, {graph['throttled']} answered 429, {graph['earlyRetries']} early retries "
        f"({graph['inFlight']} in flight when a 429 came), peak {graph['peakWindowWrites']} writes in a window; "
        f"identity: {stack.identity.tokens_issued} token(s); "
        f"poison queue: {len(poisoned)} message(s).\n")  # fmt: skip
    if missing or duplicated or wrong or poisoned:
        say(f"PROBLEM: {len(missing)} without outcome, {len(duplicated)} with two, {len(wrong)} unexpected.\n")
        return 1
    say(f"Every one of the {len(expected)} messages ended in exactly one outcome, as expected.\n")
    return 0


def _counted(outcomes: list[dict[str, Any]]) -> str:
    """`2 succeeded, 1 rejected`: outcomes counted by status, in words."""
    statuses = Counter(o["status"] for o in outcomes)
    return ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "none"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m devstack.demo`."""
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=60, help="extra updates sent at once (default 60)")
    parser.add_argument("--write-limit", type=int, default=25, help="simulated Graph writes per window")
    parser.add_argument("--window", type=float, default=5.0, help="simulated write window in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        return run(args.burst, args.write_limit, args.window, sys.stdout)
    except KeyboardInterrupt:
        sys.stdout.write("\nInterrupted; everything started was stopped.\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
