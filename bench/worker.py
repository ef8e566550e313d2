"""One measurement in a fresh process: `python -m bench.worker MODE ...`, result as JSON on stdout's last line.

Settings come from the environment the orchestrator (`python -m bench`) sets before the process
starts, as the Functions host sets app settings before the worker imports `function_app`; each
measurement gets its own process because `load_settings()` and `pipeline()` are cached per process.
This module runs in the project's venv and, for the msgraph-beta-sdk variant, in bench/.venv-sdk,
so it imports nothing at module level that only one of them has.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
Handler = Callable[[bytes, Any], str]


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (`ru_maxrss`, KiB on Linux).

    Linux carries `ru_maxrss` across fork and exec, so a child exec'd straight from a big parent
    reports the parent's size; the benchmarks start workers through `sh` (see `bench.cost.worker`),
    whose small address space is the one inherited. `_vm_hwm_mb` is the kernel's per-address-space
    figure, as a cross-check.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


# -- drain: the local runner driving the real function_app -------------------------------------------------


def drain(idle_for: float, timeout: float) -> dict[str, Any]:
    """Run function_app under devstack's runner until the input queue stays empty."""
    import os  # noqa: PLC0415

    import function_app  # noqa: PLC0415 - the environment is already in place
    from devstack.runner import Runner  # noqa: PLC0415

    cpu0, wall0 = time.process_time(), time.monotonic()
    runner = Runner(function_app.app, settings=dict(os.environ), host_json=REPO / "host.json")
    try:
        stats = runner.run_until_idle(idle_for=idle_for, timeout=timeout)
    finally:
        runner.stop()
    return {
        "runner": {
            "invocations": stats.invocations,
            "succeeded": stats.succeeded,
            "failed": stats.failed,
            "poisoned": stats.poisoned,
            "maxInFlight": stats.max_in_flight,
        },
        "cpuSeconds": time.process_time() - cpu0,
        "wallSeconds": time.monotonic() - wall0 - idle_for,
        "peakRssMb": _peak_rss_mb(),
        "vmHwmMb": _vm_hwm_mb(),
        "concurrency": runner.options.max_concurrency,
    }


# -- cost: the handler driven directly, bodies in memory -----------------------------------------------------


MODES = ("", "info-logging", "env-per-request", "session-request")
"""Variations of the certstate handler: as deployed; with INFO logs formatted to a null stream (the
Functions worker ships INFO records to the host); as before the first benchmark's change, with
requests reading the proxy environment and ~/.netrc on every request (`trust_env`); and as before
the tenants benchmark's change, each PATCH through `Session.request` (prepare_request's merging,
hooks, cookie jar) instead of a prepared request through the session's adapter."""


def _through_session(client: Any, *, trust_env: bool) -> None:  # noqa: ANN401 - a GraphClient
    """Send the client's PATCHes through `Session.request`, as the code did before (see MODES)."""
    from shared.graph import transport  # noqa: PLC0415

    client._session.trust_env = trust_env

    def send(session: Any, prepared: Any, timeout: tuple[float, float]) -> Any:  # noqa: ANN401 - requests' objects
        return session.request(
            prepared.method, prepared.url, data=prepared.body, headers=prepared.headers, timeout=timeout,
            allow_redirects=False, stream=True,
        )  # fmt: skip

    transport.send = send


def _handler(variant: str, mode: str = "") -> tuple[Handler, Callable[[], None]]:
    """The per-message function of a variant and what closes it."""
    import logging  # noqa: PLC0415
    import os  # noqa: PLC0415

    from shared.host_config import queue_options  # noqa: PLC0415
    from shared.settings import load_settings  # noqa: PLC0415

    if mode == "info-logging":
        logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # noqa: SIM115
    settings, options = load_settings(), queue_options()
    if variant == "certstate":
        from shared.wiring import pipeline  # noqa: PLC0415

        if mode in ("env-per-request", "session-request"):
            _through_session(pipeline()._graph, trust_env=mode == "env-per-request")

        def handle(body: bytes, delivery: Any) -> str:  # noqa: ANN401
            return _text(pipeline().handle(body, delivery))

        return handle, lambda: None
    if variant == "lean":
        return _lean(settings.GRAPH_BASE_URL), lambda: None
    if variant == "naive":
        from shared.wiring import build_credential, build_pipeline  # noqa: PLC0415

        def naive(body: bytes, delivery: Any) -> str:  # noqa: ANN401
            # What certstate avoids: the whole wiring (credential, so a token request; session, so a
            # TCP connection; pacer) built again for every message.
            credential = build_credential(settings)
            pipe = build_pipeline(settings, options, credential)
            try:
                return _text(pipe.handle(body, delivery))
            finally:
                pipe._graph._session.close()  # type: ignore[attr-defined]
                close = getattr(credential, "close", None)
                if close is not None:
                    close()

        return naive, lambda: None
    if variant == "sdk":
        from bench.sdk_variant import SdkPatcher, build_sdk_pipeline  # noqa: PLC0415

        patcher = SdkPatcher(settings)
        sdk_pipeline = build_sdk_pipeline(settings, options, patcher)

        def sdk(body: bytes, delivery: Any) -> str:  # noqa: ANN401
            return _text(sdk_pipeline.handle(body, delivery))

        return sdk, patcher.close
    raise SystemExit(f"unknown variant {variant!r}")


def _lean(base_url: str) -> Handler:
    """The lean route: pydantic validates the message, one `requests.Session` sends the same PATCH, JSON answers.

    No telemetry, no audit trail, no pacing, no retries: what the same work costs written directly. The
    token is fetched once (azure-identity, as certstate does) and reused; the session reads the environment
    once, as certstate's does (`trust_env` off), so the ratio measures certstate, not a known requests cost.
    """
    import datetime as dt  # noqa: PLC0415
    from typing import Literal  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    import pydantic  # noqa: PLC0415
    import requests  # noqa: PLC0415
    from azure.identity import ManagedIdentityCredential  # noqa: PLC0415

    from shared.graph.routes import _HOP_PATHS  # noqa: PLC0415 - the same URL for the same `via`

    class Update(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        certificateExpirationDateTime: str | None = None  # noqa: N815 - Graph's names
        certificateIssuanceState: Literal["issued", "revoked", "failed", "unknown"] | None = None  # noqa: N815
        certificateKeyUsage: str | None = None  # noqa: N815
        certificateThumbprint: str | None = None  # noqa: N815
        certificateKeyLength: int | None = None  # noqa: N815
        certificateSerialNumber: str | None = None  # noqa: N815

    class Message(pydantic.BaseModel):
        correlationId: str  # noqa: N815
        profileType: str  # noqa: N815
        deviceConfigurationId: str  # noqa: N815
        managedDeviceCertificateStateId: str  # noqa: N815
        via: str | None = None
        update: Update

    scope = "{0.scheme}://{0.netloc}/.default".format(urlsplit(base_url))  # as certstate asks (national clouds)
    token = ManagedIdentityCredential().get_token(scope).token
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Bearer {token}"

    def lean(body: bytes, delivery: Any) -> str:  # noqa: ANN401
        m = Message.model_validate_json(body)
        hop = _HOP_PATHS[m.via] if m.via else ""
        url = (
            f"{base_url}/deviceManagement/deviceConfigurations/{m.deviceConfigurationId}{hop}"
            f"/microsoft.graph.{m.profileType}/managedDeviceCertificateStates/{m.managedDeviceCertificateStateId}"
        )
        answer = session.patch(url, json=m.update.model_dump(exclude_none=True), timeout=(3.05, 10))
        status = "succeeded" if answer.ok else "failed"
        return json.dumps({
            "status": status, "correlationId": m.correlationId, "messageId": delivery.message_id,
            "httpStatus": answer.status_code, "requestId": answer.headers.get("request-id"),
            "completedAt": dt.datetime.now(dt.UTC).isoformat(),
        })  # fmt: skip

    return lean


def _bodies(count: int, tenants: tuple[str, ...] = ()) -> list[bytes]:
    # bench.services needs aiohttp (the simulator), which the SDK venv lacks: same messages, built here.
    sys.path.insert(0, str(REPO))
    from bench.messages import bodies  # noqa: PLC0415

    return bodies(count, tenants=tenants)


def calibration_ms() -> float:
    """CPU milliseconds of a fixed pure-Python workload: how fast this machine is right now."""
    document = {"key": list(range(50)), "nested": {"a": "b" * 40}}
    started = time.process_time()
    for i in range(2000):
        json.loads(json.dumps({**document, "i": i}))
        sum(j * j for j in range(100))
    return (time.process_time() - started) * 1000


def cost(variant: str, count: int, warmup: int, mode: str, concurrency: int = 1) -> dict[str, Any]:
    """Per-message CPU (`time.process_time`) and wall time of `count` messages after `warmup` ones.

    With `concurrency` > 1 the messages are handled that many at once, as the host runs a batch: a sample
    is then a group's CPU over its messages, since one message's own CPU cannot be told apart.
    """
    from shared.pipeline import Delivery  # noqa: PLC0415

    handle, close = _handler(variant, mode)
    messages = _bodies(warmup + count)
    for body in messages[:warmup]:
        handle(body, Delivery(message_id=str(uuid.uuid4()), dequeue_count=1))
    timed = messages[warmup:]
    figures = _timed(handle, timed) if concurrency == 1 else _timed_together(handle, timed, concurrency)
    result = {"variant": variant, "warmup": warmup, "concurrency": concurrency, **figures}
    close()
    return result


def _timed_together(handle: Handler, messages: list[bytes], concurrency: int) -> dict[str, Any]:
    """CPU and wall time per message of `handle` over `messages`, `concurrency` at a time, in groups of 4 batches."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from shared.pipeline import Delivery  # noqa: PLC0415

    def one(body: bytes) -> str:
        return json.loads(handle(body, Delivery(message_id=str(uuid.uuid4()), dequeue_count=1)))["status"]  # type: ignore[no-any-return]

    group = concurrency * 4
    statuses: dict[str, int] = {}
    cpu: list[float] = []
    wall: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for start in range(0, len(messages), group):
            part = messages[start : start + group]
            c, w = time.process_time(), time.perf_counter()
            for status in pool.map(one, part):
                statuses[status] = statuses.get(status, 0) + 1
            cpu.append((time.process_time() - c) / len(part))
            wall.append((time.perf_counter() - w) / len(part))
    total_cpu, total_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return _figures(
        statuses, cpu, wall, (total_cpu, total_wall), (total_cpu / len(messages), total_wall / len(messages))
    )


def _timed(handle: Handler, messages: list[bytes]) -> dict[str, Any]:
    """CPU and wall time per message of `handle` over `messages`, and the process's memory after them."""
    from shared.pipeline import Delivery  # noqa: PLC0415

    statuses: dict[str, int] = {}
    cpu: list[float] = []
    wall: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for body in messages:
        delivery = Delivery(message_id=str(uuid.uuid4()), dequeue_count=1)
        c, w = time.process_time(), time.perf_counter()
        outcome = handle(body, delivery)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
        status = json.loads(outcome)["status"]
        statuses[status] = statuses.get(status, 0) + 1
    total_cpu, total_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return _figures(statuses, cpu, wall, (total_cpu, total_wall), (statistics.fmean(cpu), statistics.fmean(wall)))


def _figures(
    statuses: dict[str, int],
    cpu: list[float],
    wall: list[float],
    totals: tuple[float, float],
    means: tuple[float, float],
) -> dict[str, Any]:
    """A measurement's result: its samples (seconds) and totals and means (CPU, wall), the process's memory."""
    return {
        "messages": sum(statuses.values()),
        "statuses": statuses,
        "cpuMedianMs": statistics.median(cpu) * 1000,
        "cpuMeanMs": means[0] * 1000,
        "cpuP90Ms": statistics.quantiles(cpu, n=10)[-1] * 1000 if len(cpu) > 1 else cpu[0] * 1000,
        "wallMedianMs": statistics.median(wall) * 1000,
        "wallMeanMs": means[1] * 1000,
        "totalCpuSeconds": totals[0],
        "totalWallSeconds": totals[1],
        "peakRssMb": _peak_rss_mb(),
        "vmHwmMb": _vm_hwm_mb(),
        "calibrationMs": calibration_ms(),
        "cpuSamplesMs": [round(x * 1000, 4) for x in cpu],
        "wallSamplesMs": [round(x * 1000, 4) for x in wall],
    }


def tenants(count: int, warmup: int, mode: str) -> dict[str, Any]:
    """Memory per tenant (tracemalloc, one message to each new tenant), then CPU per message round-robin.

    The served tenants come from SERVED_TENANT_IDS, as deployed; the warm-up goes to the first one.
    """
    import os  # noqa: PLC0415
    import tracemalloc  # noqa: PLC0415

    from shared.pipeline import Delivery  # noqa: PLC0415

    served = tuple(t for t in os.environ["SERVED_TENANT_IDS"].split(",") if t)
    handle, close = _handler("certstate", mode)
    for body in _bodies(warmup, served[:1]):
        handle(body, Delivery(message_id=str(uuid.uuid4()), dequeue_count=1))
    rss_one = _peak_rss_mb()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for body in _bodies(len(served) - 1, served[1:]):  # the first message of every other tenant
        handle(body, Delivery(message_id=str(uuid.uuid4()), dequeue_count=1))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    rss_all = _peak_rss_mb()
    result = {"tenants": len(served), "warmup": warmup, **_timed(handle, _bodies(count, served))}
    close()
    return {
        **result,
        "bytesPerTenant": grown / (len(served) - 1) if len(served) > 1 else 0.0,
        "peakRssOneTenantMb": rss_one,
        "peakRssAllTenantsMb": rss_all,
    }


# -- cold start -------------------------------------------------------------------------------------------------


def cold(variant: str) -> dict[str, Any]:
    """Import the function app, then run its function on a first message, as a fresh worker would."""
    started = time.perf_counter()
    module_name = "function_app" if variant == "certstate" else "bench.sdk_function_app"
    sys.path.insert(0, str(REPO))
    import azure.functions  # noqa: PLC0415, F401 - the worker has it loaded before it imports the app

    functions_loaded = time.perf_counter()
    module = __import__(module_name, fromlist=["app"])
    imported = time.perf_counter()
    rss_after_import = _peak_rss_mb()

    from azure.functions.queue import QueueMessage  # noqa: PLC0415

    from bench.messages import bodies  # noqa: PLC0415

    class Out:
        value: str | None = None

        def set(self, value: str) -> None:
            self.value = value

        def get(self) -> str | None:
            return self.value

    function = module.app.get_functions()[0].get_user_function()
    out = Out()
    function(QueueMessage(id=str(uuid.uuid4()), body=bodies(1)[0], dequeue_count=1), out)  # type: ignore[no-untyped-call]
    handled = time.perf_counter()
    status = json.loads(out.value or "{}").get("status")
    return {
        "variant": variant,
        "importSeconds": imported - started,
        "importAppSeconds": imported - functions_loaded,
        "firstMessageSeconds": handled - imported,
        "status": status,
        "peakRssAfterImportMb": rss_after_import,
        "peakRssMb": _peak_rss_mb(),
        "vmHwmMb": _vm_hwm_mb(),
        "modules": len(sys.modules),
    }


# -- profile ----------------------------------------------------------------------------------------------------


def profile(count: int, out: Path, mode: str) -> dict[str, Any]:
    """cProfile of `count` handled messages (after a warm-up), saved as pstats to `out`."""
    import cProfile  # noqa: PLC0415

    from shared.pipeline import Delivery  # noqa: PLC0415

    handle, close = _handler("certstate", mode)
    messages = _bodies(20 + count)
    for body in messages[:20]:
        handle(body, Delivery(message_id=str(uuid.uuid4()), dequeue_count=1))
    deliveries = [Delivery(message_id=str(uuid.uuid4()), dequeue_count=1) for _ in range(count)]
    profiler = cProfile.Profile()  # wall clock (cheap to read); bench.cost takes the socket waits out
    cpu0 = time.process_time()
    profiler.enable()
    for body, delivery in zip(messages[20:], deliveries, strict=True):
        handle(body, delivery)
    profiler.disable()
    cpu = time.process_time() - cpu0
    close()
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out)
    return {"messages": count, "profiledCpuSeconds": cpu}


def _text(result: Any) -> str:  # noqa: ANN401 - a pipeline Result, or None when deferred
    """The outcome's queue text; the benchmarks never defer (no outage, budget waits within limits)."""
    assert result is not None
    return str(result.text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("drain")
    p.add_argument("--idle-for", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=400.0)
    p = sub.add_parser("cost")
    p.add_argument("--variant", choices=("certstate", "lean", "naive", "sdk"), required=True)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--mode", choices=MODES, default="")
    p.add_argument("--concurrency", type=int, default=1)
    p = sub.add_parser("tenants")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--mode", choices=MODES, default="")
    p = sub.add_parser("cold")
    p.add_argument("--variant", choices=("certstate", "sdk"), required=True)
    p = sub.add_parser("profile")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", choices=MODES, default="")
    args = parser.parse_args(argv)
    if args.command == "drain":
        _emit(drain(args.idle_for, args.timeout))
    elif args.command == "cost":
        _emit(cost(args.variant, args.messages, args.warmup, args.mode, args.concurrency))
    elif args.command == "tenants":
        _emit(tenants(args.messages, args.warmup, args.mode))
    elif args.command == "cold":
        _emit(cold(args.variant))
    else:
        _emit(profile(args.messages, args.out, args.mode))


if __name__ == "__main__":
    main()
