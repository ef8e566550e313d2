"""The queue options of host.json, read by the app (last delivery) and the local runner.

host.json is the single source of truth for `maxDequeueCount`: the function needs it to
know a message's last delivery, and reading it here keeps the two from drifting apart.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` with the queue extension's defaults (functions-facts.md section 2)."""

    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: Literal["base64", "none"] = "base64"

    @property
    def effective_new_batch_threshold(self) -> int:
        """The host's default is batchSize/2 per vCPU when host.json does not set one."""
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return self.batch_size // 2 * (os.cpu_count() or 1)


def parse_timespan(value: str) -> float:
    """Seconds in a .NET TimeSpan string such as `00:00:30` or `1.00:00:00`."""
    match = _TIMESPAN.match(value.strip())
    if match is None:
        msg = f"not a TimeSpan: {value!r}"
        raise ValueError(msg)
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def queue_options(host: Path | dict[str, Any] = HOST_JSON) -> QueueOptions:
    """Read `extensions.queues` from a host.json path or its parsed content."""
    document = json.loads(host.read_text(encoding="utf-8")) if isinstance(host, Path) else host
    queues: dict[str, Any] = document.get("extensions", {}).get("queues", {})
    defaults = QueueOptions()
    encoding = str(queues.get("messageEncoding", defaults.message_encoding)).lower()
    if encoding not in ("base64", "none"):
        msg = f"messageEncoding must be base64 or none, not {encoding!r}"
        raise ValueError(msg)
    return QueueOptions(
        batch_size=int(queues.get("batchSize", defaults.batch_size)),
        new_batch_threshold=int(queues["newBatchThreshold"]) if "newBatchThreshold" in queues else None,
        max_polling_interval=parse_timespan(queues["maxPollingInterval"])
        if "maxPollingInterval" in queues
        else defaults.max_polling_interval,
        visibility_timeout=parse_timespan(queues["visibilityTimeout"])
        if "visibilityTimeout" in queues
        else defaults.visibility_timeout,
        max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
        message_encoding="none" if encoding == "none" else "base64",
    )
