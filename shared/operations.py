"""What the timer functions do: record the queue depths, purge the audit trail past its retention.

Azure Monitor's own queue metrics are per storage account, not per queue, so the input backlog and
a poisoned message would be invisible without these counts (docs/operations.md, the `poison` and
`backlog` alerts).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueServiceClient

from shared.audit import AuditTrail
from shared.logs import log_event
from shared.telemetry import Telemetry, flush

logger = logging.getLogger("certstate.operations")


class Operations:
    """The queue-depth reading and the audit purge, over the function's own storage clients."""

    def __init__(
        self,
        *,
        queues: QueueServiceClient,
        queue_names: Mapping[str, str],
        telemetry: Telemetry,
        audit: AuditTrail | None,
        retention_days: int,
    ) -> None:
        self._queues = queues
        self._queue_names = dict(queue_names)
        self._telemetry = telemetry
        self._audit = audit
        self._retention_days = retention_days

    def record_queue_depths(self) -> dict[str, int]:
        """The approximate message count of each queue (`input`, `poison`, `result`), as metrics and a log line.

        A queue that does not exist yet (the host creates `<input>-poison` on first use) counts 0.
        """
        depths: dict[str, int] = {}
        for label, name in self._queue_names.items():
            try:
                properties = self._queues.get_queue_client(name).get_queue_properties()
                depths[label] = int(properties.approximate_message_count or 0)
            except ResourceNotFoundError:
                depths[label] = 0
            self._telemetry.queue_depth(label, depths[label])
        log_event(logger, logging.INFO, "queueDepths", **depths)
        flush()  # the instance may be frozen right after a timer run
        return depths

    def purge_audit(self) -> int:
        """Delete the audit rows older than the retention (`AUDIT_RETENTION_DAYS`)."""
        if self._audit is None:
            return 0
        deleted = self._audit.purge(self._retention_days)
        flush()
        return deleted
