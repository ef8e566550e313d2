"""The host.json queue options the function itself needs, read as the Functions host reads them.

`maxDequeueCount` tells a message's last delivery, `batchSize + newBatchThreshold` sizes the HTTP pool,
`newBatchThreshold` bounds the copies that may wait long for a write slot (shared/graph/client.py),
and `messageEncoding` sets how much of a queue message an outcome may fill. Keys are case-insensitive
and `AzureFunctionsJobHost__extensions__queues__<option>` app settings override host.json, as in the
host. The host refuses a host.json it cannot read before the function runs, so nothing here re-checks
it: the host's full reading, with its limits, is `devstack.host_config` (the local runner's), and
tests/devstack/test_host_config.py holds the two to the same answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

HOST_JSON: Final = Path(__file__).resolve().parent.parent / "host.json"
OVERRIDE_PREFIX: Final = "azurefunctionsjobhost__extensions__queues__"
"""App settings named so (case-insensitively) override host.json's `extensions.queues` options."""

Encoding = Literal["base64", "none"]


@dataclass(frozen=True)
class QueueOptions:
    """What the pipeline needs of the host's queue options."""

    max_dequeue_count: int = 5
    max_concurrency: int = 24  # batchSize + newBatchThreshold: invocations at once per instance
    message_encoding: Encoding = "base64"
    new_batch_threshold: int = 8  # the host fetches another batch once no more than this many run


def queue_options(
    host: Path | Mapping[str, Any] | None = HOST_JSON,
    *,
    processor_count: int | None = None,
    app_settings: Mapping[str, str] | None = None,
) -> QueueOptions:
    """host.json's options (a path, its parsed content, or None for the defaults), overridden by app settings.

    `newBatchThreshold` defaults to `batchSize // 2 * processors`, as the host's does.
    """
    document = json.loads(host.read_text(encoding="utf-8")) if isinstance(host, Path) else host or {}
    queues = _lowered(_lowered(_lowered(document).get("extensions", {})).get("queues", {}))
    environ = os.environ if app_settings is None else app_settings
    queues.update({name.lower()[len(OVERRIDE_PREFIX) :]: v for name, v in environ.items() if _overrides(name)})
    batch_size = int(queues.get("batchsize", 16))
    processors = processor_count if processor_count is not None else (os.cpu_count() or 1)
    threshold = int(queues.get("newbatchthreshold", batch_size // 2 * processors))
    encoding: Encoding = "none" if str(queues.get("messageencoding", "base64")).lower() == "none" else "base64"
    return QueueOptions(int(queues.get("maxdequeuecount", 5)), batch_size + threshold, encoding, threshold)


def _lowered(section: object) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in section.items()} if isinstance(section, Mapping) else {}


def _overrides(name: str) -> bool:
    return name.lower().startswith(OVERRIDE_PREFIX)
