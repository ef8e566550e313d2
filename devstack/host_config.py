"""host.json's `extensions.queues`, read the way the Functions host reads it, for the local runner.

Every option the runner reproduces, with the host's defaults, limits and refusals (TimeSpan strings,
keys given twice in different case, `AzureFunctionsJobHost__extensions__queues__*` overrides). The
function itself needs three of these values and reads them with `shared.host_config`;
tests/devstack/test_host_config.py holds the two to the same answers on the shipped host.json.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from shared.host_config import HOST_JSON, OVERRIDE_PREFIX

__all__ = [
    "HOST_JSON",
    "MAX_BATCH_SIZE",
    "MIN_POLLING_INTERVAL",
    "HostConfigError",
    "HostQueueOptions",
    "host_queue_options",
    "parse_timespan",
]

MAX_BATCH_SIZE = 32
"""The queue extension's upper limit for ``batchSize``."""
MIN_POLLING_INTERVAL = 0.1
"""``QueuePollingIntervals.Minimum`` (seconds): the floor for ``maxPollingInterval``."""
Encoding = Literal["base64", "none"]
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


class HostConfigError(ValueError):
    """host.json holds queue options the Functions host would refuse (or that cannot be read unambiguously)."""


def parse_timespan(value: str) -> float:
    """Seconds in a .NET ``TimeSpan`` string (``[d.]hh:mm[:ss[.fffffff]]``), e.g. ``00:00:30`` or ``1.00:00:00``."""
    match = _TIMESPAN.fullmatch(value.strip())
    if match is None:
        msg = f"not a TimeSpan (expected e.g. '00:00:30'): {value!r}"
        raise HostConfigError(msg)
    days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        msg = f"TimeSpan field out of range: {value!r}"
        raise HostConfigError(msg)
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    return total + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _lookup(mapping: Mapping[str, object], key: str, where: str) -> object:
    """Case-insensitive lookup, as the host's configuration reads host.json; ``None`` when absent.

    Two keys differing only in case are refused rather than guessing which one the host would take.
    """
    found = [value for name, value in mapping.items() if name.lower() == key.lower()]
    if len(found) > 1:
        msg = f"{where}{key} is given more than once (host.json keys are case-insensitive)"
        raise HostConfigError(msg)
    return found[0] if found else None


def _section(mapping: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    value = _lookup(mapping, key, where)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        msg = f"{where}{key} must be an object, got {value!r}"
        raise HostConfigError(msg)
    return value


@dataclass(frozen=True)
class HostQueueOptions:
    """The host's ``QueuesOptions`` (Storage Queues extension 5.x): defaults, limits and resolved values.

    ``new_batch_threshold`` is always resolved: :meth:`from_host_json` fills in the host's default.
    """

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: Encoding = "base64"

    def __post_init__(self) -> None:
        """Reject what the host rejects at startup, with its limits."""
        problem = None
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            problem = f"batchSize must be between 1 and {MAX_BATCH_SIZE}, got {self.batch_size}"
        elif self.new_batch_threshold < 0:
            problem = f"newBatchThreshold must be >= 0, got {self.new_batch_threshold}"
        elif self.max_polling_interval < MIN_POLLING_INTERVAL:
            problem = f"maxPollingInterval must be at least 00:00:00.1, got {self.max_polling_interval}s"
        elif self.visibility_timeout < 0:
            problem = f"visibilityTimeout must not be negative, got {self.visibility_timeout}s"
        elif self.max_dequeue_count < 1:
            problem = f"maxDequeueCount must be >= 1, got {self.max_dequeue_count}"
        elif self.message_encoding not in ("base64", "none"):
            problem = f"messageEncoding must be 'base64' or 'none', got {self.message_encoding!r}"
        if problem is not None:
            raise HostConfigError(problem)

    @property
    def max_concurrency(self) -> int:
        """Upper bound of concurrent invocations per function and instance: ``batchSize + newBatchThreshold``."""
        return self.batch_size + self.new_batch_threshold

    @classmethod
    def from_host_json(
        cls,
        host_json: Path | Mapping[str, Any] | None,
        *,
        processor_count: int | None = None,
        app_settings: Mapping[str, str] | None = None,
    ) -> HostQueueOptions:
        """Read ``extensions.queues`` from a host.json path or its parsed content (``None``: all defaults).

        ``processor_count`` feeds the default ``newBatchThreshold`` (``batchSize // 2 * processors``); it
        defaults to ``os.cpu_count()`` like a dedicated host (Consumption counts 1). App settings named
        ``AzureFunctionsJobHost__extensions__queues__<option>`` override host.json, as in the real host.
        """
        if isinstance(host_json, Path):
            try:
                document: object = json.loads(host_json.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                msg = f"{host_json} is not valid JSON: {exc}"
                raise HostConfigError(msg) from exc
        else:
            document = host_json or {}
        if not isinstance(document, Mapping):
            msg = f"host.json must hold a JSON object, got {type(document).__name__}"
            raise HostConfigError(msg)
        queues = _with_overrides(_section(_section(document, "extensions", ""), "queues", "extensions."), app_settings)
        where = "extensions.queues."

        def integer(key: str, default: int) -> int:
            value = _lookup(queues, key, where)
            if value is None:
                return default
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
                return int(value)  # the host's configuration holds strings, so "8" binds like 8
            msg = f"{where}{key} must be an integer, got {value!r}"
            raise HostConfigError(msg)

        def timespan(key: str, default: float) -> float:
            value = _lookup(queues, key, where)
            if value is None:
                return default
            if not isinstance(value, str):
                msg = f"{where}{key} must be a TimeSpan string such as '00:00:30', got {value!r}"
                raise HostConfigError(msg)
            return parse_timespan(value)

        encoding = _lookup(queues, "messageEncoding", where)
        batch_size = integer("batchSize", cls.batch_size)
        processors = processor_count if processor_count is not None else (os.cpu_count() or 1)
        return cls(
            batch_size=batch_size,
            new_batch_threshold=integer("newBatchThreshold", batch_size // 2 * processors),
            max_polling_interval=timespan("maxPollingInterval", cls.max_polling_interval),
            visibility_timeout=timespan("visibilityTimeout", cls.visibility_timeout),
            max_dequeue_count=integer("maxDequeueCount", cls.max_dequeue_count),
            # Case-insensitive like the host; anything but the two names is refused by __post_init__.
            message_encoding=cast("Encoding", "base64" if encoding is None else str(encoding).lower()),
        )


def _with_overrides(queues: Mapping[str, object], app_settings: Mapping[str, str] | None) -> Mapping[str, object]:
    overrides = {
        name[len(OVERRIDE_PREFIX) :]: value
        for name, value in (app_settings or {}).items()
        if name.lower().startswith(OVERRIDE_PREFIX)
    }
    if not overrides:
        return queues
    replaced = {key.lower() for key in overrides}
    return {**{k: v for k, v in queues.items() if k.lower() not in replaced}, **overrides}


def host_queue_options(
    host: Path | Mapping[str, Any] | None = HOST_JSON,
    *,
    processor_count: int | None = None,
    app_settings: Mapping[str, str] | None = None,
) -> HostQueueOptions:
    """The host's queue options: host.json beside the app, with app-setting overrides from the environment."""
    return HostQueueOptions.from_host_json(
        host, processor_count=processor_count, app_settings=os.environ if app_settings is None else app_settings
    )
