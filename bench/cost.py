"""Cost per message, cold start, package size and the profile: one fresh worker process each.

The simulator and the identity emulator run in this process, the measured code in a child, so the
child's `time.process_time()` is its own. No write limit, no injected latency: the network is
loopback, so what is left is what the code spends.
"""

from __future__ import annotations

import json
import os
import pstats
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from bench.services import UNLIMITED_WRITES, CountingGraphSimulator
from devstack.identity_emulator import IdentityEmulator

REPO = Path(__file__).resolve().parent.parent
SDK_VENV = REPO / "bench" / ".venv-sdk"
SDK_PYTHON = SDK_VENV / "bin" / "python"
SDK_REQUIREMENTS = REPO / "bench" / "requirements-sdk.txt"

# The pacer stays in the path but never waits: 10,000 writes a second, far beyond what one process sends.
UNPACED = {"GRAPH_WRITE_BUDGET": "10000", "GRAPH_WRITE_WINDOW_SECONDS": "1"}


@dataclass
class Services:
    """The identity emulator and the counting Graph simulator of one measurement."""

    identity: IdentityEmulator
    graph: CountingGraphSimulator

    def env(self, **extra: str) -> dict[str, str]:
        """The worker's environment: app settings as the Functions host would set them."""
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "GRAPH_BASE_URL": self.graph.base_url,
            "CREDENTIAL_MODE": "managedIdentity",
            "INPUT_QUEUE_NAME": "bench-updates",
            "RESULT_QUEUE_NAME": "bench-results",
            **UNPACED,
            **self.identity.env(),
            **extra,
        }

    def counts(self) -> dict[str, int]:
        """What the services saw: token requests, Graph requests and TCP connections to Graph."""
        return {
            "tokenRequests": self.identity.token_requests,
            "graphRequests": self.graph.stats()["requests"],
            "connections": self.graph.connections,
        }


@contextmanager
def services() -> Iterator[Services]:
    """Fresh loopback services for one measurement (counters start at zero)."""
    key = secrets.token_bytes(32)
    with (
        IdentityEmulator(signing_key=key) as identity,
        CountingGraphSimulator(key, write_limit=UNLIMITED_WRITES) as graph,
    ):
        yield Services(identity, graph)


def worker(python: Path | str, args: list[str], env: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """Run `python -m bench.worker ARGS` and return the JSON it prints last."""
    process = subprocess.run(
        worker_argv(python, args),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if process.returncode != 0:
        raise RuntimeError(f"bench.worker {' '.join(args)} failed:\n{process.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(process.stdout.strip().splitlines()[-1])
    return result


def worker_argv(python: Path | str, args: list[str]) -> list[str]:
    """`python -m bench.worker ARGS`, started by `sh` so that the worker's `ru_maxrss` is its own.

    Linux keeps `ru_maxrss` across fork and exec: a worker exec'd straight from this (large) process
    would report this process's peak. `sh` forks it instead of exec'ing it (`; exit $?` follows), so
    the address space it inherits the figure from is the shell's.
    """
    return ["/bin/sh", "-c", '"$0" "$@"; exit $?', str(python), "-m", "bench.worker", *args]


def python_for(variant: str) -> Path | str:
    """The interpreter of a variant: bench/.venv-sdk for the SDK, this one otherwise."""
    return SDK_PYTHON if variant == "sdk" else sys.executable


def ensure_sdk_venv() -> bool:
    """Create bench/.venv-sdk with msgraph-beta-sdk if it is missing; False if that fails."""
    if SDK_PYTHON.exists():
        return True
    print(f"creating {SDK_VENV} (msgraph-beta-sdk, ~700 MB; once)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True)
        subprocess.run(
            [str(SDK_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(SDK_REQUIREMENTS)],
            check=True,
            cwd=SDK_REQUIREMENTS.parent,
        )
    except subprocess.CalledProcessError as err:
        print(f"could not create the SDK venv ({err}); the SDK variant is skipped", file=sys.stderr)
        shutil.rmtree(SDK_VENV, ignore_errors=True)
        return False
    return True


# -- cost per message ----------------------------------------------------------------------------------------


def cost_runs(variants: dict[str, tuple[str, str]], messages: dict[str, int], rounds: int) -> dict[str, Any]:
    """Per-message CPU and wall time of each variant, `rounds` fresh processes each, interleaved.

    `variants` maps a label to (variant, mode). Interleaving spreads a slow spell of the machine over
    every variant instead of one; the per-message samples of all rounds are pooled.
    """
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    for _ in range(rounds):
        for label, (variant, mode) in variants.items():
            args = ["cost", "--variant", variant, "--messages", str(max(1, messages[label] // rounds))]
            if mode:
                args += ["--mode", mode]
            with services() as svc:
                result = worker(python_for(variant), args, svc.env())
                result.update(svc.counts())
            runs[label].append(result)
    pooled = {label: _pool(results) for label, results in runs.items()}
    reference = runs[next(iter(runs))]  # the first variant: certstate as deployed
    for label, results in runs.items():
        # Paired by round: a slow spell of the machine slows both sides of a ratio alike.
        ratios = [
            statistics.median(r["cpuSamplesMs"]) / statistics.median(ref["cpuSamplesMs"])
            for r, ref in zip(results, reference, strict=True)
        ]
        pooled[label]["cpuRatioToReference"] = statistics.median(ratios)
    return pooled


def _pool(results: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = [x for r in results for x in r["cpuSamplesMs"]]
    wall = [x for r in results for x in r["wallSamplesMs"]]
    handled = results[0]["messages"] + results[0]["warmup"]
    return {
        "variant": results[0]["variant"],
        "runs": len(results),
        "messages": len(cpu),
        "messagesPerRun": results[0]["messages"],
        "warmup": results[0]["warmup"],
        "statuses": {k: sum(r["statuses"].get(k, 0) for r in results) for k in results[0]["statuses"]},
        "cpuMedianMs": statistics.median(cpu),
        "cpuMeanMs": statistics.fmean(cpu),
        "cpuP90Ms": statistics.quantiles(cpu, n=10)[-1],
        "cpuRunMediansMs": [statistics.median(r["cpuSamplesMs"]) for r in results],
        "cpuBestRunMedianMs": min(statistics.median(r["cpuSamplesMs"]) for r in results),
        "calibrationMs": statistics.median(r["calibrationMs"] for r in results),
        "wallMedianMs": statistics.median(wall),
        "wallMeanMs": statistics.fmean(wall),
        "peakRssMb": max(r["peakRssMb"] for r in results),
        "tokenRequests": max(r["tokenRequests"] for r in results),
        "connections": max(r["connections"] for r in results),
        "graphRequests": max(r["graphRequests"] for r in results),
        "handledPerRun": handled,
        "tokenRequestsPer1000": max(r["tokenRequests"] for r in results) * 1000 / handled,
        "connectionsPer1000": max(r["connections"] for r in results) * 1000 / handled,
    }


# -- cold start ----------------------------------------------------------------------------------------------


def cold(variant: str, runs: int) -> dict[str, Any]:
    """Import the app and handle a first message in a fresh process, `runs` times; the median run."""
    results = []
    for _ in range(runs):
        with services() as svc:
            started = time.perf_counter()
            result = worker(python_for(variant), ["cold", "--variant", variant], svc.env())
            result["processSeconds"] = time.perf_counter() - started
            results.append(result)
    return {
        "variant": variant,
        "runs": runs,
        "status": results[0]["status"],
        "importSeconds": statistics.median(r["importSeconds"] for r in results),
        "importSecondsAll": sorted(r["importSeconds"] for r in results),
        "firstMessageSeconds": statistics.median(r["firstMessageSeconds"] for r in results),
        "processSeconds": statistics.median(r["processSeconds"] for r in results),
        "peakRssAfterImportMb": max(r["peakRssAfterImportMb"] for r in results),
        "peakRssMbMax": max(r["peakRssMb"] for r in results),
        "vmHwmMbMax": max(r["vmHwmMb"] or 0.0 for r in results),
        "modules": results[0]["modules"],
    }


# -- profile -------------------------------------------------------------------------------------------------

PHASES = (
    ("handle, in all", "shared/pipeline.py", "handle"),
    ("decode and validate the message", "shared/contract/parsing.py", "decode_body", "parse_message"),
    ("resolve the route", "shared/graph/routes.py", "build_request"),
    ("Graph client: pacer", "shared/graph/pacing.py", "acquire"),
    ("Graph client: token (cached)", "shared/graph/client.py", "_token"),
    ("Graph client: send the PATCH", "shared/graph/client.py", "_send"),
    ("… requests: environment (proxies, netrc)", "requests/sessions.py", "merge_environment_settings"),
    ("… requests: prepare_request", "requests/sessions.py", "prepare_request"),
    ("… requests: Session.send (urllib3, http.client, socket)", "requests/sessions.py", "send"),
    ("build the outcome", "shared/outcome_builder.py", "build"),
    ("outcome to JSON", "shared/contract/outcomes.py", "to_json"),
    ("log events", "shared/logs.py", "log_event"),
)
"""Where a message's time goes: cumulative time of these functions (file suffix, names)."""
_WAITING_IN = (
    "handle, in all",
    "Graph client: send the PATCH",
    "… requests: Session.send (urllib3, http.client, socket)",
)


def profile(messages: int, out_dir: Path, mode: str = "") -> dict[str, Any]:
    """cProfile of the certstate handler: time per phase, and the functions with the most self time."""
    out = out_dir / f"profile{'-' + mode if mode else ''}.pstats"
    args = ["profile", "--messages", str(messages), "--out", str(out)]
    if mode:
        args += ["--mode", mode]
    with services() as svc:
        result = worker(sys.executable, args, svc.env())
    stats: Any = pstats.Stats(str(out))
    phases: dict[str, float] = {}
    functions = []
    waiting = 0.0  # blocked in recv for the simulator's answer: wall time, not CPU
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        if name == "<method 'recv_into' of '_socket.socket' objects>":
            waiting += cumtime / messages * 1000
            continue
        for label, suffix, *names in PHASES:
            if filename.endswith(suffix) and name in names:
                phases[label] = phases.get(label, 0.0) + cumtime / messages * 1000
        functions.append((tottime, calls, cumtime, f"{_short(filename)}:{line}({name})"))
    for label in _WAITING_IN:  # the phases the receive happens in (one message at a time, one thread)
        phases[label] = phases.get(label, 0.0) - waiting
    functions.sort(reverse=True)
    return {
        **result,
        "mode": mode,
        "phasesMsPerMessage": {label: phases.get(label, 0.0) for label, *_ in PHASES},
        "waitingMsPerMessage": waiting,
        "top": [
            {
                "function": f,
                "calls": c,
                "selfMsPerMessage": t / messages * 1000,
                "cumMsPerMessage": cu / messages * 1000,
            }
            for t, c, cu, f in functions[:12]
        ],
        "file": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# -- package size --------------------------------------------------------------------------------------------


def funcignore_patterns() -> list[str]:
    """.funcignore's patterns (gitignore syntax; only the simple forms it uses are supported)."""
    lines = (REPO / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def app_files() -> list[Path]:
    """The files `func publish` / `azd deploy` would upload: the checkout less .funcignore's patterns."""
    patterns = funcignore_patterns()

    def ignored(relative: Path, is_dir: bool) -> bool:
        for pattern in patterns:
            dir_only = pattern.endswith("/")
            bare = pattern.rstrip("/")
            if dir_only and not is_dir:
                continue
            if "/" in bare:
                if fnmatch(relative.as_posix(), bare):
                    return True
            elif fnmatch(relative.name, bare):
                return True
        return False

    files: list[Path] = []
    for root, dirs, names in os.walk(REPO):
        base = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if not ignored(base / d, True)]
        files.extend(REPO / base / n for n in names if not ignored(base / n, False))
    return sorted(files)


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _zip_bytes(root: Path, extra: list[Path]) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-zip-") as tmp:
        target = Path(tmp) / "package.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in extra:
                archive.write(path, path.relative_to(REPO))
            for path in root.rglob("*"):
                if path.is_file():
                    archive.write(path, Path(".python_packages/lib/site-packages") / path.relative_to(root))
        return target.stat().st_size


def package_size(variant: str, *, with_zip: bool) -> dict[str, Any]:
    """MB of the app files plus `pip install --target` of its requirements, without and with .pyc files."""
    requirements = ["-r", str(REPO / "requirements.txt")]
    if variant == "sdk":
        requirements = ["-r", str(SDK_REQUIREMENTS)]
    files = app_files()
    app_bytes = sum(p.stat().st_size for p in files)
    with tempfile.TemporaryDirectory(prefix="bench-package-") as tmp:
        target = Path(tmp) / "site-packages"
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
             "--target", str(target), *requirements],
            check=True, capture_output=True, cwd=REPO / "bench",
        )  # fmt: skip
        source = _tree_bytes(target)
        biggest = sorted(
            ((_tree_bytes(p) if p.is_dir() else p.stat().st_size, p.name) for p in target.iterdir()), reverse=True
        )[:6]
        zipped = _zip_bytes(target, files) if with_zip else None
        # As pip itself does, a file that does not compile (the SDK ships some) is left without a .pyc.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", str(target)], check=False, capture_output=True
        )
        compiled = _tree_bytes(target)
        seconds = time.monotonic() - started
    mb = 1024 * 1024
    return {
        "variant": variant,
        "appFiles": [str(p.relative_to(REPO)) for p in files if "__pycache__" not in p.parts],
        "appMb": app_bytes / mb,
        "sourceMb": (app_bytes + source) / mb,
        "withPycMb": (app_bytes + compiled) / mb,
        "zipMb": zipped / mb if zipped is not None else None,
        "largest": [{"name": name, "mb": size / mb} for size, name in biggest],
        "seconds": seconds,
    }
