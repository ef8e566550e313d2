"""`python -m bench`: run every benchmark and write docs/benchmarks.md (see that file)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import cost, goodput, report, tenants
from bench import telemetry as bench_telemetry
from bench.goodput import Scenario, infra_budget
from bench.markdown import splice_file
from devstack.azurite import Azurite

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LIMIT, WINDOW = 25, 5.0  # Intune's 100 writes / 20 s, scaled down in window (same 5 writes/s)


def scenarios(*, quick: bool, extended: bool) -> list[Scenario]:
    """The drains to run: the infra's budget (B = floor(A / N) - 1) for one and two processes, and more if extended."""
    messages = 100 if quick else 500
    chosen = [
        Scenario("one process, infra budget", LIMIT, WINDOW, 1, infra_budget(LIMIT, 1), messages),
        Scenario("two processes, infra budget", LIMIT, WINDOW, 2, infra_budget(LIMIT, 2), messages),
    ]
    if extended:
        chosen += [
            Scenario("one process, no headroom", LIMIT, WINDOW, 1, LIMIT, messages),
            Scenario("two processes, limit // 2 each", LIMIT, WINDOW, 2, LIMIT // 2, messages),
            Scenario("one process, 100/20 s, infra budget", 100, 20.0, 1, infra_budget(100, 1), messages),
            Scenario("two processes, 100/20 s, infra budget", 100, 20.0, 2, infra_budget(100, 2), messages),
        ]
    return chosen


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, and the versions that shape the figures."""
    cpu = "unknown"
    memory_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for name in ("requests", "urllib3", "pydantic", "azure-identity", "msal", "azure-functions", "aiohttp"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    if cost.SDK_PYTHON.exists():
        out = subprocess.run(
            [str(cost.SDK_PYTHON), "-c", "import importlib.metadata as m; print(m.version('msgraph-beta-sdk'))"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        versions["msgraph-beta-sdk"] = out.stdout.strip() or "-"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def _step(label: str) -> float:
    print(f"[bench] {label}", flush=True)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, save the raw results and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (~2 min): fewer messages, fewer repeats")
    parser.add_argument(
        "--extended", action="store_true", help="also the no-headroom, 2x12 and 100/20 s drains (~7 min more)"
    )
    parser.add_argument("--skip-sdk", action="store_true", help="leave out the msgraph-beta-sdk variant")
    parser.add_argument(
        "--only",
        choices=["telemetry"],
        help="run one section and rewrite only its figures in the report (telemetry: section 6, about 5 min)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RESULTS_JSON",
        help="continue an interrupted run from its bench/results/run-*/results.json (sections done are kept)",
    )
    args = parser.parse_args(argv)
    if args.only:
        return _only(args)
    sdk = not args.skip_sdk and cost.ensure_sdk_venv()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.resume:
        results: dict[str, Any] = json.loads(args.resume.read_text(encoding="utf-8"))
        run_dir = args.resume.parent
        args.quick, args.extended = results["quick"], results.get("extended", False)
    else:
        results = {
            "command": ".venv/bin/python -m bench"
            + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            "extended": args.extended,
            "machine": machine(),
            "timings": {},
        }
        run_dir = Path(tempfile.mkdtemp(prefix=dt.datetime.now().strftime("run-%Y%m%d-%H%M%S-"), dir=RESULTS))
    raw = run_dir / "results.json"
    sections = {
        "goodput": ("goodput: draining backlogs through the runner", _goodput),
        "cost": ("cost per message: the handler driven directly", _cost),
        "cold": ("cold start", _cold),
        "package": ("package size (pip install --target)", _package),
        "profile": ("profile of the hot path", _profile),
        "telemetry": ("what telemetry and the audit trail cost", _telemetry),
        "tenants": ("tenants: three on one queue, one in a 429 storm; the cost of 50", _tenants),
    }
    for key, (label, section) in sections.items():
        if key in results:
            continue
        started = _step(label)
        results[key] = section(args, sdk, run_dir)
        results["timings"][key] = time.monotonic() - started
        raw.write_text(json.dumps(results, indent=1), encoding="utf-8")  # a checkpoint for --resume
    results["durationSeconds"] = sum(results["timings"].values())
    raw.write_text(json.dumps(results, indent=1), encoding="utf-8")
    report.write(results, args.output)
    print(f"[bench] rewrote the figures of {args.output} ({raw}) in {results['durationSeconds']:.0f} s", flush=True)
    return 0


def _telemetry(args: argparse.Namespace, sdk: bool, run_dir: Path) -> dict[str, Any]:
    quick = args.quick
    return bench_telemetry.run(messages=600 if quick else 3000, rounds=3 if quick else 6, cold_runs=1 if quick else 3)


def _only(args: argparse.Namespace) -> int:
    """Run one section and splice it into the existing report (the other sections keep their run's figures)."""
    started = _step("what telemetry and the audit trail cost")
    section = _telemetry(args, False, RESULTS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"telemetry-{stamp}.json").write_text(json.dumps(section, indent=1), encoding="utf-8")
    section["command"] = ".venv/bin/python -m bench --only telemetry" + (" --quick" if args.quick else "")
    section["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    splice_file(args.output, report.telemetry_blocks(section))
    print(
        f"[bench] rewrote the figures of section 6 in {args.output} in {time.monotonic() - started:.0f} s", flush=True
    )
    return 0


def _goodput(args: argparse.Namespace, sdk: bool, run_dir: Path) -> list[dict[str, Any]]:
    results = []
    with Azurite() as azurite:
        for s in scenarios(quick=args.quick, extended=args.extended):
            print(f"[bench]   {s.name}: {s.processes} x {s.budget}/{s.window_s:g} s against "
                  f"{s.write_limit}/{s.window_s:g} s, {s.messages} messages", flush=True)  # fmt: skip
            result = goodput.run(azurite, s, run_dir)
            print(f"[bench]     goodput {result['goodput']:.1%}, 429s {result['share429']:.1%}", flush=True)
            results.append(result)
    return results


def _cost(args: argparse.Namespace, sdk: bool, run_dir: Path) -> dict[str, Any]:
    variants = {
        "certstate": ("certstate", ""),
        "certstate, INFO logs": ("certstate", "info-logging"),
        "certstate before (env per request)": ("certstate", "env-per-request"),
        "naive (credential + session per message)": ("naive", ""),
    }
    n = 300 if args.quick else 3000
    messages = dict.fromkeys(variants, n)
    messages["naive (credential + session per message)"] = n // 2
    if sdk:
        variants["msgraph-beta-sdk"] = ("sdk", "")
        messages["msgraph-beta-sdk"] = 100 if args.quick else 600
    return cost.cost_runs(variants, messages, rounds=1 if args.quick else 6)


def _cold(args: argparse.Namespace, sdk: bool, run_dir: Path) -> dict[str, Any]:
    runs = 1 if args.quick else 3
    results = {"certstate": cost.cold("certstate", runs)}
    if sdk:
        results["msgraph-beta-sdk"] = cost.cold("sdk", runs)
    return results


def _package(args: argparse.Namespace, sdk: bool, run_dir: Path) -> dict[str, Any]:
    results = {"certstate": cost.package_size("certstate", with_zip=True)}
    if sdk and not args.quick:
        results["msgraph-beta-sdk"] = cost.package_size("sdk", with_zip=False)
    return results


def _profile(args: argparse.Namespace, sdk: bool, run_dir: Path) -> dict[str, Any]:
    messages = 500 if args.quick else 2000
    return {
        "after": cost.profile(messages, run_dir),
        "before": cost.profile(messages, run_dir, mode="env-per-request"),
    }


def _tenants(args: argparse.Namespace, sdk: bool, run_dir: Path) -> dict[str, Any]:
    return tenants.run(quick=args.quick, log_dir=run_dir)


def rerender(raw: Path, output: Path) -> None:
    """Write a run's figures into the report again from its saved results."""
    report.write(json.loads(raw.read_text(encoding="utf-8")), output)
