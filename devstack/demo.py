"""The run command: the whole pipeline on this machine, on real local parts, in about a minute.

Starts Azurite, the managed-identity emulator, the Graph simulator (Intune's write limit scaled to
25 writes per 5 s so a short burst meets it) and the local runner driving `function_app.py`; sends
`examples/` (the seven seed routes, the doc page's twenty-four, the invalid messages, a dry run) plus a
burst; shows live progress; prints every outcome; stops everything it started. Exit status 0 when every
message got exactly one outcome with the status its example promises.
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


def _examples() -> list[tuple[str, bytes, str]]:
    """(name, queue text, expected status) for every example file."""
    found = [
        (p, "succeeded") for folder in ("seed-routes", "doc-routes") for p in sorted((EXAMPLES / folder).glob("*.json"))
    ]
    found += [(EXAMPLES / "dry-run.json", "validated")]
    found += [(p, "rejected") for p in sorted((EXAMPLES / "invalid").iterdir())]
    return [(path.stem, path.read_bytes(), status) for path, status in found]


def _burst(size: int) -> list[tuple[str, bytes, str]]:
    """`size` updates cycling over the seven seed routes, as a busy producer would send them."""
    routes = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "seed-routes").glob("*.json"))]
    burst = []
    for i in range(size):
        message = {**routes[i % len(routes)], "correlationId": f"burst-{i:03d}"}
        message["update"] = {"certificateIssuanceState": "issued", "lastCertificateStateChangeDateTime":
                             f"2026-11-27T14:{i // 60:02d}:{i % 60:02d}.1234567+00:00"}  # fmt: skip
        burst.append((f"burst-{i:03d}", json.dumps(message).encode(), "succeeded"))
    return burst


def run(burst: int, write_limit: int, window: float, out: TextIO) -> int:
    """Run the demo; the return value is the process exit status."""
    say = out.write
    say("Starting Azurite, the identity emulator, the Graph simulator and the local runner ...\n")
    with LocalStack(write_limit=write_limit, write_window_s=window) as stack:
        budget = stack.settings["GRAPH_WRITE_BUDGET"]
        say(f"  queues      {stack.settings['INPUT_QUEUE_NAME']} -> {stack.settings['RESULT_QUEUE_NAME']}\n")
        say(f"  Graph       {stack.graph.base_url} (write limit {write_limit} per {window:g} s)\n")
        say(f"  pacing      {budget} writes per {window:g} s per process (the limit minus one, as deployed)\n\n")
        messages = _examples() + _burst(burst)
        expected = {}
        for name, body, status in messages:
            encoding: Literal["none", "base64"] = (
                "base64" if name.startswith("burst") and int(name[-3:]) % 2 else "none"
            )
            expected[stack.send(body, encoding=encoding)] = (name, status)
        say(f"Sent {len(messages)} messages ({len(messages) - burst} examples, a burst of {burst}; "
            "half the burst base64-encoded, the rest raw JSON).\n")  # fmt: skip
        stack.start_runner()
        outcomes = _follow(stack, len(messages), out)
        say("\n")
        return _report(stack, outcomes, expected, out)


def _follow(stack: LocalStack, total: int, out: TextIO, timeout: float = 300) -> list[dict[str, Any]]:
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
            line = (f"[{now - started:5.1f} s] outcomes {len(outcomes)}/{total}  "
                    + "  ".join(f"{s} {n}" for s, n in sorted(counts.items()))
                    + f"  | Graph writes {graph['writes']}, 429s {graph['throttled']}")  # fmt: skip
            out.write(("\r" + line.ljust(110)) if live else line + "\n")
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
    burst = Counter(o["status"] for o in outcomes if expected.get(o["messageId"], ("",))[0].startswith("burst"))
    say(f"burst of {burst.total()}: " + ", ".join(f"{n} {status}" for status, n in sorted(burst.items())) + "\n\n")

    graph, poisoned = stack.graph.stats(), stack.poisoned()
    missing = set(expected) - set(by_id)
    duplicated = [m for m, n in by_id.items() if n > 1]
    wrong = [o for o in outcomes if expected.get(o["messageId"], ("", "?"))[1] != o["status"]]
    say(f"Graph: {graph['writes']} writes, {graph['throttled']} answered 429, {graph['earlyRetries']} early retries, "
        f"peak {graph['peakWindowWrites']} writes in a window; identity: {stack.identity.tokens_issued} token(s); "
        f"poison queue: {len(poisoned)} message(s).\n")  # fmt: skip
    if missing or duplicated or wrong or poisoned:
        say(f"PROBLEM: {len(missing)} without outcome, {len(duplicated)} with two, {len(wrong)} unexpected.\n")
        return 1
    say(f"Every one of the {len(expected)} messages ended in exactly one outcome, as expected.\n")
    return 0


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
