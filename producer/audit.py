"""Reading the audit trail: what happened to X (`certstate history`), and cut requests (`certstate replay`).

The table layout is the contract's (shared/contract/audit.py): a query reads one row-key range per
partition (the index of the most specific criterion given) across the partitions of the days in
range, and the table filters the rest server-side. The range is on the time each message was first
enqueued, which a redelivery does not change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.contract.audit import (
    INDEXES,
    OUTCOME_ROW,
    SEPARATOR,
    AuditSummary,
    day_key,
    index_row_prefix,
    joined,
    outcome_row_key,
    partition_key,
    prefix_end,
)
from shared.contract.envelope import unwrap
from shared.contract.errors import MessageRejected
from shared.contract.outcomes import RequestOmitted
from shared.contract.parsing import decode_body

if TYPE_CHECKING:  # the CLI loads the storage SDKs only for the command that needs them
    from azure.data.tables import TableClient


@dataclass(frozen=True)
class HistoryQuery:
    """Outcomes of messages first enqueued in [since, until], narrowed by any of the ids, tenant and status."""

    since: datetime
    until: datetime
    message_id: str | None = None
    correlation_id: str | None = None
    device_configuration_id: str | None = None
    managed_device_certificate_state_id: str | None = None
    tenant_id: str | None = None
    status: str | None = None

    def criteria(self) -> dict[str, str]:
        """The given criteria by their table property names."""
        given = {
            "messageId": self.message_id,
            "correlationId": self.correlation_id,
            "deviceConfigurationId": self.device_configuration_id,
            "managedDeviceCertificateStateId": self.managed_device_certificate_state_id,
            "tenantId": self.tenant_id,
            "status": self.status,
        }
        return {name: value for name, value in given.items() if value}


def _filter(query: HistoryQuery) -> tuple[str, dict[str, Any]]:
    criteria = query.criteria()
    parameters: dict[str, Any] = {
        "pkFrom": day_key(query.since) + SEPARATOR,
        "pkTo": prefix_end(day_key(query.until) + SEPARATOR),
        "since": query.since,
        "until": query.until,
    }
    clauses = ["PartitionKey ge @pkFrom", "PartitionKey lt @pkTo", "enqueuedAt ge @since", "enqueuedAt le @until"]
    if "messageId" in criteria:
        parameters["rk"] = outcome_row_key(criteria["messageId"])
        clauses.append("RowKey eq @rk")
    else:
        index = next((field for field in INDEXES if field in criteria), None)
        prefix = index_row_prefix(index, criteria[index]) if index else OUTCOME_ROW + SEPARATOR
        parameters.update(rkFrom=prefix, rkTo=prefix_end(prefix))
        clauses += ["RowKey ge @rkFrom", "RowKey lt @rkTo"]
    for n, (name, value) in enumerate(criteria.items()):
        parameters[f"v{n}"] = value
        clauses.append(f"{name} eq @v{n}")
    return " and ".join(clauses), parameters


def history(table: TableClient, query: HistoryQuery) -> list[AuditSummary]:
    """Every matching outcome, oldest first (one per message: a duplicate outcome replaced its rows)."""
    text, parameters = _filter(query)
    rows = table.query_entities(text, parameters=parameters, select=AuditSummary.columns())
    return sorted((AuditSummary.from_entity(row) for row in rows), key=lambda s: (s.completed_at, s.message_id))


@dataclass(frozen=True)
class AuditedOutcome:
    """The full record of one message: its outcome, and the original body if the outcome left it out."""

    outcome: dict[str, Any]
    original_request: bytes | None


def full_record(table: TableClient, summary: AuditSummary) -> AuditedOutcome:
    """Read the outcome row of a summary found by `history`."""
    row = table.get_entity(partition_key(summary.enqueued_at, summary.tenant_id), outcome_row_key(summary.message_id))
    outcome = joined(row, "outcome")
    request = joined(row, "request")
    return AuditedOutcome(
        outcome=json.loads(outcome) if isinstance(outcome, str) else {},
        original_request=request if isinstance(request, bytes) else None,
    )


def omitted_request(
    table: TableClient, message_id: str, completed_at: datetime | None, omitted: RequestOmitted
) -> dict[str, Any] | None:
    """The request a `failed` outcome left out (`requestOmitted`), from its outcome row; None if none matches.

    The row keeps the body as delivered (raw JSON or base64; a deferred copy's envelope), read here as
    the function reads it; only a request of the size and SHA-256 the outcome names is returned. The
    outcome does not say on which day its message was enqueued (the partition's day), so every
    partition up to the day it completed is asked for the message's outcome row: one row-key match each.
    """
    clauses, parameters = ["RowKey eq @rk"], {"rk": outcome_row_key(message_id)}
    if completed_at is not None:
        clauses.append("PartitionKey lt @pkTo")
        parameters["pkTo"] = prefix_end(day_key(completed_at) + SEPARATOR)
    for row in table.query_entities(" and ".join(clauses), parameters=parameters):
        body = joined(row, "request")
        if not isinstance(body, bytes):
            continue
        try:
            request, _ = unwrap(decode_body(body))
            if RequestOmitted.of(request) == omitted:
                return request
        except (MessageRejected, ValueError, RecursionError):
            continue
    return None
