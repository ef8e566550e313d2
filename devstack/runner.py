"""A local stand-in for ``func start``: drives a Python v2 app's queue-triggered functions from Azurite.

The function's retry, poison and encoding behaviour is the host's Storage Queues extension's, and the
host cannot be installed here. This runner reads the queue triggers and outputs a ``function_app.py``
registers (``app.get_functions()``), polls the trigger queues with ``azure-storage-queue`` and calls the
functions the way the host's ``QueueListener``/``QueueProcessor`` (extension 5.x) do, from ``host.json``
``extensions.queues`` as :mod:`devstack.host_config` reads it: batches and their threshold, the 10-minute
lock and its renewal, polling back-off, ``messageEncoding``, ``visibilityTimeout``, ``maxDequeueCount``
then ``<queue>-poison`` (the contract's queue-name rule, :mod:`shared.contract.limits`); outputs written
only when an invocation succeeds; ``%NAME%`` queue names and connections; the Python worker's indexing
checks (:mod:`devstack.worker_checks`) and its sync thread pool. docs/devstack.md ("The runner") lists
what is reproduced, with the host's defaults, and every difference from the real host.

CLI: ``python -m devstack.runner --app function_app [--host-json host.json]`` (app settings from the
environment, filled in from ``local.settings.json`` ``Values``); Ctrl-C or SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import concurrent.futures
import contextlib
import dataclasses
import importlib
import inspect
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import azure.functions as func
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.functions.decorators.core import BindingDirection
from azure.functions.queue import QueueMessage as InvocationMessage
from azure.functions.queue import QueueMessageOutConverter
from azure.storage.queue import QueueClient, QueueMessage, QueueServiceClient, StorageErrorCode

from devstack.azurite import connection_string as azurite_connection_string
from devstack.host_config import MIN_POLLING_INTERVAL, HostConfigError, HostQueueOptions
from devstack.worker_checks import FunctionLoadError, check_function
from shared.contract.limits import POISON_SUFFIX, queue_name_problem

__all__ = [
    "AZURITE_QUEUE_PORT_VARIABLE",
    "HOST_LOCK_SECONDS",
    "HostQueueOptions",
    "OutBinding",
    "Runner",
    "RunnerError",
    "RunnerStats",
    "development_storage_connection_string",
    "poison_queue_name",
    "sync_thread_count",
]

log = logging.getLogger("devstack.runner")

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
"""The app setting that sizes the Python worker's pool for sync functions."""
HOST_LOCK_SECONDS = 600
"""The host holds a message it is processing invisible for 10 minutes and renews that while it runs."""
AZURITE_QUEUE_PORT_VARIABLE = "AZURITE_QUEUE_PORT"
"""Where ``UseDevelopmentStorage=true`` finds Azurite's queue port when it is not the default."""
DEFAULT_AZURITE_QUEUE_PORT = 10001
_SETTING_REF = re.compile(r"%([^%]+)%")
_GONE = {StorageErrorCode.POP_RECEIPT_MISMATCH, StorageErrorCode.MESSAGE_NOT_FOUND, StorageErrorCode.QUEUE_NOT_FOUND}


class RunnerError(RuntimeError):
    """The app, its settings or host.json cannot be run as the host would run them."""


# -- the app's bindings ----------------------------------------------------------------------------------------


class OutBinding(func.Out[object]):
    """What a function receives for each output binding: ``set`` keeps the value, ``get`` returns it."""

    def __init__(self) -> None:
        self._value: object = None
        self.is_set = False

    def set(self, val: object) -> None:
        """Keep ``val``; it is written only if the invocation succeeds."""
        self._value = val
        self.is_set = True

    def get(self) -> object:
        """Return the value set last (``None`` if never set)."""
        return self._value


@dataclasses.dataclass(frozen=True)
class _QueueBinding:
    arg_name: str
    queue_name: str
    connection: str  # the connection string itself, resolved from the settings


@dataclasses.dataclass(frozen=True)
class _FunctionSpec:
    name: str
    user_function: Callable[..., Any]
    trigger: _QueueBinding
    outputs: tuple[_QueueBinding, ...]


def _resolve_queue_name(raw: str, settings: Mapping[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in settings:
            raise RunnerError(f"{where}: '%{key}%' does not resolve to a value (no app setting {key!r})")
        return settings[key]

    name = _SETTING_REF.sub(replace, raw).lower()
    if problem := queue_name_problem(name):
        raise RunnerError(f"{where}: invalid queue name: {problem}")
    return name


def development_storage_connection_string(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Return the connection string ``value`` stands for: itself, or Azurite's for ``UseDevelopmentStorage=true``.

    Like Core Tools, ``UseDevelopmentStorage=true`` means the well-known ``devstoreaccount1`` account on
    127.0.0.1 with the queue service on port 10001, or on the port in ``AZURITE_QUEUE_PORT`` (looked up in
    ``environ``, by default ``os.environ``) when that is set. ``DevelopmentStorageProxyUri`` is not supported.
    """
    parts = [part.partition("=") for part in value.split(";") if part.strip()]
    keys = {key.strip().lower(): text.strip() for key, _, text in parts}
    if "usedevelopmentstorage" not in keys:
        return value
    if keys["usedevelopmentstorage"].lower() != "true" or len(keys) > 1:
        raise RunnerError(f"only a bare 'UseDevelopmentStorage=true' is supported, got {value!r}")
    raw_port = (os.environ if environ is None else environ).get(AZURITE_QUEUE_PORT_VARIABLE, "").strip()
    port = DEFAULT_AZURITE_QUEUE_PORT
    if raw_port:
        if not raw_port.isdecimal() or not 0 < int(raw_port) < 65536:
            raise RunnerError(f"{AZURITE_QUEUE_PORT_VARIABLE} must be a TCP port number, got {raw_port!r}")
        port = int(raw_port)
    return azurite_connection_string(port)


def _resolve_connection(setting_name: str | None, settings: Mapping[str, str], where: str) -> str:
    name = setting_name or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        value = settings.get(candidate)
        if value:
            try:
                return development_storage_connection_string(value, collections.ChainMap(dict(settings), os.environ))
            except RunnerError as exc:
                raise RunnerError(f"{where}: {candidate}: {exc}") from None
    if any(key.startswith(f"{name}__") for key in settings):
        raise RunnerError(
            f"{where}: identity-based connection '{name}__...' is not supported locally; "
            f"set {name} to a connection string"
        )
    raise RunnerError(f"{where}: app setting {name!r} (the binding's connection) is not set")


def poison_queue_name(queue_name: str) -> str | None:
    """Return the host's poison queue for ``queue_name``, or ``None`` where the host has none."""
    candidate = queue_name + POISON_SUFFIX
    if queue_name.endswith(POISON_SUFFIX) or queue_name_problem(candidate):
        return None
    return candidate


class _AuthLevelAdvice(logging.Filter):
    """Drops azure-functions' "Auth level is not applied to non http function app" warning.

    `FunctionApp.get_functions()` logs it on the root logger at every indexing of an app without HTTP
    functions: advice about HTTP keys, which do not exist for a queue-triggered app, so it is noise in
    every log of this runner (and of whatever indexes the app through it).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and record.getMessage().startswith("Auth level is not applied"))


def registered_functions(app: func.FunctionApp) -> list[func.Function]:
    """`app.get_functions()`, callable more than once per process (the host indexes an app only once).

    azure-functions records indexed names in `functions_bindings` and refuses a second indexing of the
    same app as "not a unique function name"; a fresh index lets several runners serve one app.
    """
    app.functions_bindings = {}
    advice = _AuthLevelAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        return app.get_functions()
    finally:
        root.removeFilter(advice)


def _discover(app: func.FunctionApp, settings: Mapping[str, str]) -> list[_FunctionSpec]:
    specs: list[_FunctionSpec] = []
    for fn in registered_functions(app):
        name = fn.get_function_name() or fn.get_user_function().__name__
        trigger = fn.get_trigger()
        if trigger is None or trigger.get_dict_repr().get("type") != "queueTrigger":
            log.info("Skipping %s: not a queue-triggered function", name)
            continue
        if settings.get(f"AzureWebJobs.{name}.Disabled", "").lower() in ("true", "1"):
            log.info("Skipping %s: disabled by AzureWebJobs.%s.Disabled", name, name)
            continue
        where = f"function {name}"
        trigger_binding: _QueueBinding | None = None
        outputs: list[_QueueBinding] = []
        for binding in fn.get_bindings():
            spec = binding.get_dict_repr()
            kind, direction, arg = spec.get("type"), spec.get("direction"), str(spec.get("name"))
            is_trigger = kind == "queueTrigger"
            if not is_trigger and (kind != "queue" or direction != BindingDirection.OUT):
                raise RunnerError(
                    f"{where}: binding {arg!r} of type {kind!r} ({direction}) is not supported by the local "
                    "runner (queue trigger and queue outputs only)"
                )
            queue = _QueueBinding(
                arg_name=arg,
                queue_name=_resolve_queue_name(str(spec.get("queueName", "")), settings, f"{where}, {arg}"),
                connection=_resolve_connection(spec.get("connection"), settings, f"{where}, {arg}"),
            )
            if is_trigger:
                trigger_binding = queue
            else:
                outputs.append(queue)
        assert trigger_binding is not None
        user_function = fn.get_user_function()
        try:
            check_function(name, user_function, fn.get_bindings())
        except FunctionLoadError as exc:
            raise RunnerError(str(exc)) from None
        if "context" in inspect.signature(user_function).parameters:
            raise RunnerError(f"{where}: the 'context' parameter is not supported by the local runner")
        specs.append(_FunctionSpec(name, user_function, trigger_binding, tuple(outputs)))
    return specs


# -- encoding --------------------------------------------------------------------------------------------------


def _decode_base64_text(text: str) -> bytes | None:
    """Decode like the host's base64 mode (whitespace ignored, strict alphabet); ``None`` when it fails."""
    try:
        body = base64.b64decode("".join(text.split()), validate=True)
        body.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return body


def _encode_for_queue(payload: str | bytes, encoding: Literal["base64", "none"]) -> str:
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    return payload if isinstance(payload, str) else payload.decode("utf-8", errors="replace")


def _output_payloads(value: object) -> list[str | bytes]:
    """Turn an output value into message payloads, accepting exactly what the Python worker accepts."""
    datum = QueueMessageOutConverter.encode(value, expected_type=None)
    if datum.type == "string":
        return [str(datum.value)]
    if datum.type == "bytes":
        return [bytes(datum.value)]
    decoded = json.loads(datum.value)
    items = decoded if isinstance(decoded, list) else [decoded]
    return [item if isinstance(item, str) else str(item["body"]) for item in items]


def _error_code(exc: HttpResponseError) -> str:
    return str(getattr(exc, "error_code", None) or "")


# -- runtime ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunnerStats:
    """Counters since start; ``poisoned`` includes ``decode_failures``, ``released`` counts stop-time releases."""

    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0
    decode_failures: int = 0
    released: int = 0
    max_in_flight: int = 0

    def __str__(self) -> str:
        """`12 invocations (11 succeeded, 1 failed), 0 poisoned, ...`: for a log line a person reads."""
        return (
            f"{self.invocations} invocations ({self.succeeded} succeeded, {self.failed} failed), "
            f"{self.poisoned} poisoned ({self.decode_failures} undecodable), {self.released} released at stop, "
            f"at most {self.max_in_flight} at once"
        )


@dataclasses.dataclass
class _Lease:
    """A received message this runner holds; ``lock`` serialises pop-receipt changes (renew vs complete)."""

    message: QueueMessage
    pop_receipt: str
    renew_at: float
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    done: bool = False


class _Backoff:
    """``RandomizedExponentialBackoffStrategy``: min, then ~2x steps with +-20% jitter, capped at max."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self._minimum, self._maximum = minimum, maximum
        self._current = minimum
        self._exponent = 0
        self._random = random.Random()  # noqa: S311 - jitter, not security

    def next_delay(self, found_message: bool) -> float:
        if found_message:
            self._current, self._exponent = self._minimum, 0
        elif self._current < self._maximum:
            step = self._minimum + self._random.uniform(0.8, 1.2) * 2**self._exponent * self._minimum
            if step < self._maximum:
                self._current, self._exponent = step, self._exponent + 1
            else:
                self._current = self._maximum
        return self._current


class _Listener:
    """One function's poll loop and message handling: the host's QueueListener + QueueProcessor."""

    def __init__(self, runner: Runner, spec: _FunctionSpec) -> None:
        self.runner = runner
        self.spec = spec
        self.options = runner.options
        self.queue = runner.queue_client(spec.trigger.connection, spec.trigger.queue_name)
        poison = poison_queue_name(spec.trigger.queue_name)
        self.poison = runner.queue_client(spec.trigger.connection, poison) if poison else None
        self.wake = threading.Event()
        self.cond = threading.Condition()
        self.in_flight = 0
        self.leases: dict[str, _Lease] = {}
        self.counters = {field.name: 0 for field in dataclasses.fields(RunnerStats)}
        self.thread = threading.Thread(target=self._poll_loop, name=f"runner-poll-{spec.name}", daemon=True)

    def count(self, key: str, by: int = 1) -> None:
        with self.cond:
            self.counters[key] += by

    # -- polling -------------------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        backoff = _Backoff(MIN_POLLING_INTERVAL, max(self.options.max_polling_interval, MIN_POLLING_INTERVAL))
        found_since_delay = False
        stopping = self.runner.stopping
        while not stopping.is_set():
            try:
                found = self._poll_once()
            except Exception:  # keep polling: one bad release or thread start must not end the listener
                log.exception("Polling %s failed unexpectedly", self.queue.queue_name)
                found = False
            if found:
                found_since_delay = True
                continue
            if not stopping.is_set():
                self.wake.wait(backoff.next_delay(found_since_delay))
                found_since_delay = False

    def _poll_once(self) -> bool:
        """Wait for room under ``newBatchThreshold``, receive one batch, start it; ``False`` if none came."""
        stopping = self.runner.stopping
        with self.cond:
            while self.in_flight > self.options.new_batch_threshold and not stopping.is_set():
                self.cond.wait(0.5)
        if stopping.is_set():
            return False
        self.wake.clear()  # a notification from here on makes the next empty-poll wait return at once
        batch = self._receive()
        for index, message in enumerate(batch):
            if stopping.is_set():  # stop arrived during the receive: hand the rest back untouched
                for rest in batch[index:]:
                    self._release_unstarted(_Lease(rest, rest.pop_receipt or "", 0.0))
                break
            self._dispatch(message)
        return bool(batch)

    def _receive(self) -> list[QueueMessage]:
        try:
            pages = self.queue.receive_messages(
                messages_per_page=self.options.batch_size, visibility_timeout=self.runner.lock_timeout
            ).by_page()
            return list(next(pages, []))
        except ResourceNotFoundError:
            log.debug("Queue %s does not exist yet; backing off", self.queue.queue_name)
        except AzureError as exc:
            log.warning("Polling %s failed (%s); backing off", self.queue.queue_name, exc.__class__.__name__)
        return []

    def _dispatch(self, message: QueueMessage) -> None:
        lease = _Lease(message, message.pop_receipt or "", time.monotonic() + self.runner.lock_timeout / 2)
        with self.cond:
            self.in_flight += 1
            self.counters["max_in_flight"] = max(self.counters["max_in_flight"], self.in_flight)
            self.leases[message.id] = lease
        self.runner.pool.submit(self._handle, lease)

    # -- one message ---------------------------------------------------------------------------------------

    def _handle(self, lease: _Lease) -> None:
        try:
            self._process(lease)
        except Exception:
            log.exception("Unexpected error handling message %s of %s", lease.message.id, self.spec.name)
        finally:
            with self.cond:
                self.leases.pop(lease.message.id, None)
                self.in_flight -= 1
                self.cond.notify_all()

    def _process(self, lease: _Lease) -> None:
        message = lease.message
        text: str = message.content if isinstance(message.content, str) else ""
        if self.options.message_encoding == "base64":
            decoded = _decode_base64_text(text)
            if decoded is None:
                log.warning("Message decoding has failed! Check MessageEncoding settings. MessageId=%s.", message.id)
                self.count("decode_failures")
                self._move_to_poison(lease, text)
                return
            body = decoded
        else:
            body = text.encode("utf-8")
        if message.dequeue_count is not None and message.dequeue_count > self.options.max_dequeue_count:
            self._move_to_poison(lease, text)
            return
        if self.runner.stopping.is_set():
            self._release_unstarted(lease)
            return
        if self._invoke(lease, body):
            self._delete(lease)
        elif self.poison is None:
            # The host leaves such messages invisible (until the lock expires) to avoid a hot retry loop.
            log.warning("No poison queue for %s: message %s stays invisible", self.queue.queue_name, message.id)
            self._finish(lease)
        elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            self._move_to_poison(lease, text)
        else:
            self._update_visibility(lease, int(self.options.visibility_timeout))

    def _invoke(self, lease: _Lease, body: bytes) -> bool:
        """Call the user function and write its outputs; ``True`` when both succeeded."""
        message, spec = lease.message, self.spec
        invocation_id = str(uuid.uuid4())
        outs = {o.arg_name: OutBinding() for o in spec.outputs if o.arg_name != "$return"}
        kwargs: dict[str, Any] = {
            spec.trigger.arg_name: InvocationMessage(  # type: ignore[no-untyped-call]
                id=message.id,
                body=body,
                dequeue_count=message.dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=lease.pop_receipt,
            ),
            **outs,
        }
        self.count("invocations")
        log.info(
            "Executing 'Functions.%s' (Reason='New queue message detected on '%s'.', Id=%s)",
            spec.name,
            spec.trigger.queue_name,
            invocation_id,
        )
        log.debug(
            "Trigger details: MessageId: %s, DequeueCount: %s, Body: %r", message.id, message.dequeue_count, body[:500]
        )
        started = time.monotonic()
        try:
            result = spec.user_function(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            self._write_outputs(outs, result)
        except Exception:
            self.count("failed")
            log.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                spec.name,
                invocation_id,
                (time.monotonic() - started) * 1000,
            )
            return False
        self.count("succeeded")
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            spec.name,
            invocation_id,
            (time.monotonic() - started) * 1000,
        )
        return True

    def _write_outputs(self, outs: Mapping[str, OutBinding], result: object) -> None:
        """Encode every set output first (a bad value fails before anything is written), then send."""
        pending: list[tuple[_QueueBinding, list[str]]] = []
        for binding in self.spec.outputs:
            if binding.arg_name == "$return":
                value, is_set = result, result is not None
            else:
                value, is_set = outs[binding.arg_name].get(), outs[binding.arg_name].is_set
            if not is_set or value is None:
                continue
            payloads = _output_payloads(value)
            pending.append((binding, [_encode_for_queue(p, self.options.message_encoding) for p in payloads]))
        for binding, texts in pending:
            client = self.runner.queue_client(binding.connection, binding.queue_name)
            for text in texts:
                self.runner.send_creating(client, text)
            self.runner.notify(binding.queue_name)

    # -- completing a message (every path holds the lease lock and ends renewal) --------------------------

    def _finish(self, lease: _Lease) -> None:
        with lease.lock:
            lease.done = True

    def _delete(self, lease: _Lease) -> None:
        with lease.lock:
            lease.done = True
            try:
                self.queue.delete_message(lease.message.id, lease.pop_receipt)
            except HttpResponseError as exc:
                if _error_code(exc) not in _GONE:
                    raise
                log.debug("Message %s was gone or taken over before delete (%s)", lease.message.id, _error_code(exc))

    def _update_visibility(self, lease: _Lease, seconds: int) -> None:
        with lease.lock:
            lease.done = True
            try:
                self.queue.update_message(lease.message.id, lease.pop_receipt, visibility_timeout=seconds)
            except HttpResponseError as exc:
                if _error_code(exc) not in _GONE:
                    raise

    def _release_unstarted(self, lease: _Lease) -> None:
        self._update_visibility(lease, 0)
        self.count("released")

    def _move_to_poison(self, lease: _Lease, original_text: str) -> None:
        if self.poison is None:
            log.warning("No poison queue for %s: message %s stays invisible", self.queue.queue_name, lease.message.id)
            self._finish(lease)
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.options.max_dequeue_count,
            self.poison.queue_name,
        )
        self.runner.send_creating(self.poison, original_text)
        self.count("poisoned")
        self._delete(lease)
        self.runner.notify(self.poison.queue_name)

    # -- lock renewal --------------------------------------------------------------------------------------

    def renew_due(self, now: float) -> None:
        with self.cond:
            due = [lease for lease in self.leases.values() if not lease.done and lease.renew_at <= now]
        for lease in due:
            with lease.lock:
                if lease.done:
                    continue
                try:
                    receipt = self.queue.update_message(
                        lease.message.id, lease.pop_receipt, visibility_timeout=self.runner.lock_timeout
                    )
                except HttpResponseError as exc:
                    if _error_code(exc) in _GONE:
                        log.warning("Lost the lock on message %s (%s)", lease.message.id, _error_code(exc))
                        lease.done = True
                    else:  # transient: try again on the next tick
                        log.warning("Renewing the lock on message %s failed: %s", lease.message.id, exc.reason)
                    continue
                except AzureError as exc:
                    log.warning("Renewing the lock on message %s failed: %s", lease.message.id, exc)
                    continue
                lease.pop_receipt = receipt.pop_receipt or lease.pop_receipt
                lease.renew_at = time.monotonic() + self.runner.lock_timeout / 2


async def _await(awaitable: Awaitable[object]) -> object:
    return await awaitable


class Runner:
    """Run a v2 app's queue-triggered functions against real queues with the host's queue semantics."""

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        settings: Mapping[str, str],
        host_json: Path | Mapping[str, Any] | None = None,
        processor_count: int | None = None,
        lock_timeout: int = HOST_LOCK_SECONDS,
    ) -> None:
        """Resolve the app's queue functions now, so a bad setting fails here rather than at start.

        ``settings`` are the app settings (``%NAME%`` and connection names resolve from them; they are not
        exported to ``os.environ``). ``lock_timeout`` (seconds) is the host's 10-minute processing lock;
        tests shorten it to exercise renewal.
        """
        if lock_timeout < 2:
            raise RunnerError("lock_timeout must be at least 2 seconds (renewal happens at half of it)")
        try:
            self.options = HostQueueOptions.from_host_json(
                host_json, processor_count=processor_count, app_settings=settings
            )
        except HostConfigError as exc:
            raise RunnerError(f"host.json: {exc}") from exc
        self.lock_timeout = lock_timeout
        self.stopping = threading.Event()
        self._settings = dict(settings)
        self._services: dict[str, QueueServiceClient] = {}
        self._queues: dict[tuple[str, str], QueueClient] = {}
        self._clients_lock = threading.Lock()
        specs = _discover(app, self._settings)
        if not specs:
            raise RunnerError("the app registers no queue-triggered function")
        self.thread_count = sync_thread_count(self._settings, processor_count)
        self.pool = concurrent.futures.ThreadPoolExecutor(self.thread_count, thread_name_prefix="runner-worker")
        self._listeners = [_Listener(self, spec) for spec in specs]
        self._renewer = threading.Thread(target=self._renew_loop, name="runner-renew", daemon=True)
        self._started = False
        self._closed = False

    # -- clients -------------------------------------------------------------------------------------------

    def queue_client(self, connection_string: str, queue_name: str) -> QueueClient:
        """Return the cached client for a queue (raw text in and out: encoding is done here, per host.json)."""
        with self._clients_lock:
            key = (connection_string, queue_name)
            if key not in self._queues:
                service = self._services.get(connection_string)
                if service is None:
                    service = QueueServiceClient.from_connection_string(connection_string)
                    self._services[connection_string] = service
                self._queues[key] = service.get_queue_client(queue_name)
            return self._queues[key]

    @staticmethod
    def send_creating(client: QueueClient, text: str) -> None:
        """Send one message, creating the queue on QueueNotFound (the host's AddMessageAndCreateIfNotExists)."""
        try:
            client.send_message(text)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            client.send_message(text)

    def notify(self, queue_name: str) -> None:
        """Wake listeners of ``queue_name`` (the host's SharedQueueWatcher, for outputs written here)."""
        for listener in self._listeners:
            if listener.spec.trigger.queue_name == queue_name:
                listener.wake.set()

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def functions(self) -> dict[str, str]:
        """Function name -> trigger queue, as resolved."""
        return {lst.spec.name: lst.spec.trigger.queue_name for lst in self._listeners}

    def start(self) -> Self:
        """Start polling in background threads."""
        if self._started:
            raise RunnerError("a Runner can be started once")
        self._started = True
        for listener in self._listeners:
            listener.thread.start()
        self._renewer.start()
        log.info("Runner started: %s", ", ".join(f"{n} <- {q}" for n, q in self.functions.items()))
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop fetching, let running invocations finish (up to ``timeout``), release the rest, close clients.

        Returns ``False`` if invocations were still running at the deadline; their messages then reappear
        when the lock expires, as after a host crash.
        """
        if self._closed:
            return True
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for listener in self._listeners:
            listener.wake.set()
            with listener.cond:
                listener.cond.notify_all()
        for listener in self._listeners:
            if listener.thread.is_alive():
                listener.thread.join(max(0.0, deadline - time.monotonic()))
        drained = True
        for listener in self._listeners:
            with listener.cond:
                while listener.in_flight and (left := deadline - time.monotonic()) > 0:
                    listener.cond.wait(left)
                if listener.in_flight or listener.thread.is_alive():
                    drained = False
        self._closed = True
        self.pool.shutdown(wait=False)
        if self._renewer.is_alive():
            self._renewer.join(5.0)
        if drained:
            self._close_clients()
        else:
            log.warning("Stop timed out after %.0fs with invocations still running; not waiting for them", timeout)
        log.info("Runner stopped: %s", self.stats())
        return drained

    def _close_clients(self) -> None:
        with self._clients_lock:
            for client in self._queues.values():
                client.close()
            for service in self._services.values():
                service.close()
            self._queues.clear()
            self._services.clear()

    def _renew_loop(self) -> None:
        tick = min(1.0, self.lock_timeout / 4)
        while not self._closed:
            now = time.monotonic()
            for listener in self._listeners:
                try:
                    listener.renew_due(now)
                except Exception:
                    log.exception("Lock renewal failed for %s", listener.spec.name)
            time.sleep(tick)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- observing -----------------------------------------------------------------------------------------

    def stats(self, function_name: str | None = None) -> RunnerStats:
        """Counters for one function, or summed over all (``max_in_flight`` is the largest per function)."""
        totals: dict[str, int] = {}
        for listener in self._listeners:
            if function_name is not None and listener.spec.name != function_name:
                continue
            with listener.cond:
                for key, value in listener.counters.items():
                    totals[key] = (
                        max(totals.get(key, 0), value) if key == "max_in_flight" else (totals.get(key, 0) + value)
                    )
        return RunnerStats(**totals)

    def _pending_messages(self) -> int:
        total = 0
        for listener in self._listeners:
            with contextlib.suppress(ResourceNotFoundError):
                total += listener.queue.get_queue_properties().approximate_message_count or 0
        return total

    def run_until_idle(self, idle_for: float = 0.5, timeout: float = 30.0) -> RunnerStats:
        """Start if needed; return once trigger queues were empty and nothing ran for ``idle_for`` seconds.

        The queue count includes invisible messages (released with a delay, or locked), so pending retries
        keep the runner busy. Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        if not self._started:
            self.start()
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        while True:
            now = time.monotonic()
            busy = any(listener.in_flight for listener in self._listeners) or self._pending_messages() > 0
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= idle_for:
                return self.stats()
            if now >= deadline:
                raise TimeoutError(f"runner not idle after {timeout}s: {self.stats()}")
            time.sleep(0.05)


def sync_thread_count(settings: Mapping[str, str], processor_count: int | None = None) -> int:
    """The worker's threads for sync functions: the app setting, else ``min(32, cpu_count + 4)``."""
    raw = settings.get(THREAD_COUNT_SETTING, "").strip()
    if raw:
        try:
            count = int(raw)
        except ValueError:
            count = 0
        if count < 1:
            raise RunnerError(f"{THREAD_COUNT_SETTING} must be a whole number of at least 1, not {raw!r}")
        return count
    return min(32, (processor_count or os.cpu_count() or 1) + 4)


# -- CLI -------------------------------------------------------------------------------------------------------


def local_app_settings(local_settings: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """App settings as ``func start`` sees them: ``local.settings.json`` ``Values``, overridden by the env."""
    merged: dict[str, str] = {}
    if local_settings is not None and local_settings.exists():
        values = json.loads(local_settings.read_text(encoding="utf-8")).get("Values") or {}
        merged.update({str(k): str(v) for k, v in values.items()})
    merged.update(os.environ if environ is None else environ)
    return merged


def _describe_options(options: HostQueueOptions) -> str:
    """The queue options by their host.json names, for a person reading the runner's first line."""
    return (
        f"batchSize {options.batch_size}, newBatchThreshold {options.new_batch_threshold}, "
        f"maxPollingInterval {options.max_polling_interval:g} s, visibilityTimeout {options.visibility_timeout:g} s, "
        f"maxDequeueCount {options.max_dequeue_count}, messageEncoding {options.message_encoding}"
    )


def _load_app(spec: str) -> func.FunctionApp:
    module_name, _, attr = spec.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app", None)
    if not isinstance(app, func.FunctionApp):
        raise RunnerError(f"{module_name}.{attr or 'app'} is not an azure.functions.FunctionApp")
    return app


def main(argv: Iterable[str] | None = None) -> int:
    """Run the app's queue functions until Ctrl-C / SIGTERM, then stop gracefully."""
    parser = argparse.ArgumentParser(prog="python -m devstack.runner", description=main.__doc__)
    parser.add_argument("--app", default="function_app", help="module[:attribute] of the FunctionApp")
    parser.add_argument("--host-json", type=Path, default=Path("host.json"))
    parser.add_argument(
        "--settings",
        type=Path,
        default=Path("local.settings.json"),
        help="local.settings.json whose Values fill in for unset environment variables",
    )
    parser.add_argument("--stop-timeout", type=float, default=30.0)
    parser.add_argument(
        "--lock-timeout",
        type=int,
        default=HOST_LOCK_SECONDS,
        help="seconds a received message stays invisible while it runs (the host's 10-minute lock)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every poll's HTTP request at INFO

    settings = local_app_settings(args.settings)
    # The worker sees app settings as environment variables; so does the app here (env still wins).
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    try:
        runner = Runner(
            _load_app(args.app),
            settings=settings,
            host_json=args.host_json if args.host_json.exists() else None,
            lock_timeout=args.lock_timeout,
        )
    except RunnerError as exc:
        log.error("%s", exc)
        return 2

    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop_requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts the drain

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    runner.start()
    functions = ", ".join(f"{name} <- {queue}" for name, queue in runner.functions.items())
    threads = f"{runner.thread_count} worker threads"
    print(f"Runner up: {functions} ({_describe_options(runner.options)}, {threads}); Ctrl-C stops it.", flush=True)
    while not stop_requested.wait(0.5):
        pass
    return 0 if runner.stop(args.stop_timeout) else 1


if __name__ == "__main__":
    raise SystemExit(main())
