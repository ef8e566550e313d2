"""`python -m bench.charts`: the workbook's main charts, drawn from a real local run, for docs/operations.md.

The whole local stack (Azurite, the runner driving `function_app`, the Graph simulator, the identity
emulator) runs with the Azure Monitor exporters exporting to `devstack.appinsights.FakeIngestion`;
the charts are drawn from the metric points it received, grouped as the workbook's KQL groups
`customMetrics` (docs/operations.md). Time is scaled down like the benchmarks: Graph's window is
5 s instead of 20 s, and the charts bin by 5 s instead of 5 minutes. The run, about two minutes:

1. a steady stream within the write budget, with a few messages Graph refuses (403) and a few
   producers get wrong (rejected);
2. a burst of messages: the input queue grows and drains at the write limit;
3. another tool writing to Intune as the same app: Graph answers 429, and every write of the
   process waits for the Retry-After.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import requests
from azure.identity import ManagedIdentityCredential

from devstack.appinsights import FakeIngestion
from devstack.stack import LocalStack
from shared.telemetry import flush

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "docs" / "images"
LIMIT, WINDOW = 20, 5.0
BIN = 5.0
STATE = "d99bc884-c884-d99b-84c8-9bd984c89bd9"
CONFIG = "b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11"
PATH = f"/deviceManagement/deviceConfigurations/{CONFIG}/microsoft.graph.iosScepCertificateProfile/managedDeviceCertificateStates/{STATE}"  # noqa: E501
COLOURS = {
    "succeeded": "#2e7d32",
    "validated": "#81c784",
    "rejected": "#f9a825",
    "expired": "#8d6e63",
    "failed": "#c62828",
    "2xx": "#2e7d32",
    "429": "#c62828",
    "4xx": "#f9a825",
    "5xx": "#6a1b9a",
    "none": "#616161",
    "pacer": "#1565c0",
    "retryAfter": "#c62828",
    "backoff": "#f9a825",
}


def message(n: int, *, valid: bool = True) -> dict[str, Any]:
    document: dict[str, Any] = {
        "correlationId": f"chart-{n}",
        "profileType": "iosScepCertificateProfile",
        "deviceConfigurationId": CONFIG,
        "managedDeviceCertificateStateId": STATE,
        "update": {"certificateKeyUsage": "digitalSignature", "certificateIssuer": f"CN=Contoso {n}"},
    }
    if not valid:
        document["update"] = {"certificateKeyLength": "2048"}  # a string where Graph wants a number
    return document


def run(seconds: float = 105.0) -> list[dict[str, Any]]:
    """Drive the stack through the three phases; the metric points the exporters sent."""
    with FakeIngestion() as ingestion:
        settings = {**ingestion.env(), "OTEL_METRIC_EXPORT_INTERVAL": "2000"}
        with LocalStack(write_limit=LIMIT, write_window_s=WINDOW, settings=settings) as stack:
            stack.graph.configure(latency_ms=35, error_rate=0.03, error_statuses=(403,))
            stack.start_runner()
            from shared.wiring import operations  # noqa: PLC0415 - after the stack set the app settings

            stop = threading.Event()
            started = time.monotonic()

            def depths() -> None:  # the queue-depth timer, every 2 s instead of every minute
                while not stop.wait(2.0):
                    operations().record_queue_depths()

            def other_tool() -> None:  # phase 3: someone else writes as the same app
                credential = ManagedIdentityCredential()
                session = requests.Session()
                while not stop.is_set():
                    if 70 <= time.monotonic() - started <= 90:
                        token = credential.get_token(f"{stack.graph.origin}/.default").token
                        session.patch(stack.graph.base_url + PATH, json={"certificateIssuer": "CN=Other"},
                                      headers={"Authorization": f"Bearer {token}"}, timeout=5)  # fmt: skip
                    stop.wait(0.15)

            threads = [threading.Thread(target=target, daemon=True) for target in (depths, other_tool)]
            for thread in threads:
                thread.start()
            n = 0
            while (elapsed := time.monotonic() - started) < seconds:
                burst = 120 if 30 <= elapsed < 31 and n < 400 else 0
                for _ in range(burst or 2):
                    n += 1
                    stack.send(message(n, valid=n % 17 != 0))
                time.sleep(1.0 if burst else 0.6)
            assert stack.runner is not None
            stack.runner.run_until_idle(timeout=180)
            stop.set()
            for thread in threads:
                thread.join(5)
            operations().record_queue_depths()
            flush()
            time.sleep(3)  # the exporter's last post
        return ingestion.metrics()


def series(
    points: Iterable[dict[str, Any]], name: str, key: str, value: str = "value", *, gauge: bool = False
) -> dict[str, dict[int, float]]:
    """`name`'s points by one dimension and 5-second bin, summed (as `summarize sum(valueSum) by bin(...)`),
    or for a gauge the largest reading of the bin (`max(valueMax)`)."""
    grouped: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for p in points:
        if p["name"] == name:
            cell = grouped[str(p["properties"].get(key, ""))]
            at = _bin(p["time"])
            cell[at] = max(cell[at], p[value]) if gauge else cell[at] + p[value]
    return grouped


def _bin(moment: str) -> int:
    return int(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() // BIN)


class _Axis:
    """The run's 5-second bins, from the first certstate point on."""

    def __init__(self, points: list[dict[str, Any]]) -> None:
        bins = sorted({_bin(p["time"]) for p in points if p["name"].startswith("certstate.")})
        self.first = bins[0]
        self.xs = list(range(bins[-1] - self.first + 1))
        self.seconds = [x * BIN for x in self.xs]

    def column(self, values: dict[int, float], missing: float = 0.0) -> list[float]:
        return [values.get(self.first + x, missing) for x in self.xs]


def render(points: list[dict[str, Any]], out: Path) -> list[Path]:
    """Three PNGs: outcomes (with the queue depths), throttling, Graph latency."""
    out.mkdir(parents=True, exist_ok=True)
    axis = _Axis(points)
    return [
        _save(_outcomes(points, axis), out / "outcomes.png"),
        _save(_throttling(points, axis), out / "throttling.png"),
        _save(_latency(points, axis), out / "latency.png"),
    ]


def _outcomes(points: list[dict[str, Any]], axis: _Axis) -> Any:  # noqa: ANN401 - a matplotlib Figure
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=(3, 2))
    outcomes = series(points, "certstate.outcomes", "status")
    base = [0.0] * len(axis.xs)
    for status in ("succeeded", "validated", "rejected", "expired", "failed"):
        if status in outcomes:
            heights = axis.column(outcomes[status])
            top.bar(axis.seconds, heights, BIN * 0.9, bottom=base, label=status, color=COLOURS[status], align="edge")
            base = [b + h for b, h in zip(base, heights, strict=True)]
    top.set_ylabel("outcomes per 5 s")
    top.set_ylim(0, max(base) * 1.3)
    top.set_title("Outcomes by status (certstate.outcomes)")
    top.legend(loc="upper right", ncols=3, fontsize="small")
    depth = series(points, "certstate.queue.depth", "queue", gauge=True)
    for queue, style in (("input", "-"), ("poison", ":")):  # the result queue has no consumer in this run
        if queue in depth:
            seen = sorted(depth[queue])
            bottom.plot([(b - axis.first) * BIN for b in seen], [depth[queue][b] for b in seen], style, label=queue)
    bottom.set_ylabel("messages")
    bottom.set_title("Input and poison queue depths (certstate.queue.depth): a burst of 120 at 30 s")
    bottom.set_xlabel("seconds into the run (Graph's 20 s window scaled to 5 s)")
    bottom.legend(loc="upper right", fontsize="small")
    return fig


def _throttling(points: list[dict[str, Any]], axis: _Axis) -> Any:  # noqa: ANN401 - a matplotlib Figure
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    responses: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for p in points:
        if p["name"] == "certstate.graph.responses":
            props = p["properties"]
            answer = "429" if props.get("httpStatus") == "429" else str(props.get("statusClass"))
            responses[answer][_bin(p["time"])] += p["value"]
    for answer in ("2xx", "429", "4xx", "5xx", "none"):
        if answer in responses:
            top.plot(axis.seconds, axis.column(responses[answer]), label=answer, color=COLOURS[answer], linewidth=1.8)
    top.set_ylabel("answers per 5 s")
    top.set_title(f"Graph answers (certstate.graph.responses); write limit {LIMIT} per {WINDOW:g} s")
    top.legend(loc="upper right", fontsize="small")
    waits = series(points, "certstate.waits", "reason")
    for reason in ("pacer", "retryAfter", "backoff"):
        if reason in waits:
            waited = [v / 1000 for v in axis.column(waits[reason])]
            bottom.plot(axis.seconds, waited, label=reason, color=COLOURS[reason])
    bottom.set_ylabel("s waited per 5 s, all writes")
    bottom.set_title("Time writes waited (certstate.waits): for the budget, for a Retry-After, in a backoff")
    bottom.set_xlabel("seconds into the run (another tool writes as the same app from 70 s to 90 s)")
    bottom.legend(loc="upper right", fontsize="small")
    return fig


def _latency(points: list[dict[str, Any]], axis: _Axis) -> Any:  # noqa: ANN401 - a matplotlib Figure
    fig, chart = plt.subplots(figsize=(9, 3.6))
    sums = series(points, "certstate.graph.duration", "", value="value")[""]
    counts = series(points, "certstate.graph.duration", "", value="count")[""]
    maxima = series(points, "certstate.graph.duration", "", value="max", gauge=True)[""]
    average = [s / n if n else float("nan") for s, n in zip(axis.column(sums), axis.column(counts), strict=True)]
    chart.plot(axis.seconds, average, label="average", color="#1565c0")
    chart.plot(axis.seconds, axis.column(maxima, float("nan")), label="maximum", color="#c62828", alpha=0.7)
    chart.set_ylabel("ms")
    chart.set_ylim(bottom=0)
    chart.set_title("Graph latency (certstate.graph.duration): the simulator answers in 35 ms")
    chart.set_xlabel("seconds into the run")
    chart.legend(loc="upper right", fontsize="small")
    return fig


def _save(fig: Any, path: Path) -> Path:  # noqa: ANN401 - a matplotlib Figure
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES)
    parser.add_argument("--seconds", type=float, default=105.0, help="how long producers send (default 105)")
    parser.add_argument("--save-points", type=Path, help="also write the metric points as JSON")
    parser.add_argument("--from-points", type=Path, help="draw from saved points instead of running")
    args = parser.parse_args(argv)
    if args.from_points:
        points = json.loads(args.from_points.read_text(encoding="utf-8"))
    else:
        points = run(args.seconds)
        if args.save_points:
            args.save_points.write_text(json.dumps(points), encoding="utf-8")
    for path in render(points, args.out):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
