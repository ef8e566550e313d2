"""The audit trail's table layout: what the function writes for every outcome and the CLI reads back.

One Azure table (`AUDIT_TABLE_NAME`). Partition key: the UTC day the message was first enqueued and
its tenant, `20261127|<tenantId>` (`-` without one), so a day, a range of days or one tenant's days
is a key range, and a busy day of many tenants is spread over partitions. In each partition, per
outcome, written in one entity-group transaction (all or nothing):

- `m|<messageId>`: the outcome row: the summary below, the outcome's JSON, and for a `failed`
  outcome that had to leave its `request` out, the original message body, byte for byte;
- `c|<correlationId>|<messageId>`, `d|<deviceConfigurationId>|<messageId>`,
  `s|<managedDeviceCertificateStateId>|<messageId>`: index rows carrying the same summary, so a
  lookup by any of them is a row-key range read with no second request.

A redelivered message keeps its messageId, its enqueue time and its body, so its duplicate outcome
has the same keys and replaces the rows instead of adding to them. Key parts are percent-encoded
(the table refuses slashes, `#`, `?` and control characters in keys; `|` then only ever separates).
A table string property holds 64 KiB of UTF-16 and a binary one 64 KiB, so longer values are split
over numbered properties (`outcome0`, `outcome1`, ... with `outcomeParts`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

DEFAULT_AUDIT_TABLE: Final = "certstateaudit"
SEPARATOR: Final = "|"
NO_TENANT: Final = "-"
OUTCOME_ROW: Final = "m"
INDEXES: Final = {"correlationId": "c", "deviceConfigurationId": "d", "managedDeviceCertificateStateId": "s"}
"""Summary field -> row-key prefix of its index rows."""
TEXT_PART_CHARS: Final = 30_000
BINARY_PART_BYTES: Final = 60_000


def key_part(value: str) -> str:
    """A value made safe for a table key, with `|` free to separate parts."""
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


_UNRESERVED: Final = re.compile(r"[A-Za-z0-9._~-]*")
"""The characters `quote` never encodes: a value of only these (a GUID, a message id) is its own key part."""


def day_key(moment: datetime) -> str:
    """`YYYYMMDD` of the UTC day."""
    return moment.astimezone(UTC).strftime("%Y%m%d")


def partition_key(enqueued_at: datetime, tenant_id: str | None) -> str:
    """The partition of a message: the day it was enqueued, and its tenant."""
    return f"{day_key(enqueued_at)}{SEPARATOR}{key_part(tenant_id) if tenant_id else NO_TENANT}"


def outcome_row_key(message_id: str) -> str:
    """The row of the outcome itself."""
    return f"{OUTCOME_ROW}{SEPARATOR}{key_part(message_id)}"


def index_row_prefix(field: str, value: str) -> str:
    """The row-key prefix shared by every index row of `field == value` in a partition."""
    return f"{INDEXES[field]}{SEPARATOR}{key_part(value)}{SEPARATOR}"


def prefix_end(prefix: str) -> str:
    """The smallest key after every key that starts with `prefix` (for `ge prefix and lt end`)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def days(since: datetime, until: datetime) -> list[str]:
    """Every `YYYYMMDD` from `since` to `until`, inclusive."""
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    return [(first + timedelta(days=n)).strftime("%Y%m%d") for n in range((last - first).days + 1)]


@dataclass(frozen=True)
class AuditSummary:
    """What every row of an outcome carries: enough to answer "what happened to X"."""

    message_id: str
    status: str
    completed_at: datetime
    enqueued_at: datetime
    correlation_id: str | None = None
    code: str | None = None
    http_status: int | None = None
    tenant_id: str | None = None
    profile_type: str | None = None
    device_configuration_id: str | None = None
    managed_device_certificate_state_id: str | None = None
    via: str | None = None
    attempts: int = 0
    dequeue_count: int = 0
    duration_ms: int = 0
    request_id: str | None = None

    def properties(self) -> dict[str, Any]:
        """The table properties (camelCase, as in the outcome; absent values left out)."""
        return {camel: value for name, camel in _NAMES if (value := getattr(self, name)) is not None}

    @classmethod
    def columns(cls) -> list[str]:
        """The table properties of a summary."""
        return [camel for _, camel in _NAMES]

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> AuditSummary:
        """Read the summary back from any row of the outcome."""
        values = {name: entity[camel] for name, camel in _NAMES if camel in entity}
        for moment in ("completed_at", "enqueued_at"):
            values[moment] = _aware(values[moment])
        return cls(**values)


def split_text(name: str, text: str) -> dict[str, Any]:
    """`text` as numbered string properties of at most `TEXT_PART_CHARS` characters."""
    parts = [text[i : i + TEXT_PART_CHARS] for i in range(0, len(text), TEXT_PART_CHARS)] or [""]
    return {f"{name}Parts": len(parts), **{f"{name}{n}": part for n, part in enumerate(parts)}}


def split_bytes(name: str, data: bytes) -> dict[str, Any]:
    """`data` as numbered binary properties of at most `BINARY_PART_BYTES` bytes."""
    parts = [data[i : i + BINARY_PART_BYTES] for i in range(0, len(data), BINARY_PART_BYTES)] or [b""]
    return {f"{name}Parts": len(parts), **{f"{name}{n}": part for n, part in enumerate(parts)}}


def joined(entity: Mapping[str, Any], name: str) -> str | bytes | None:
    """A value `split_text` or `split_bytes` stored, put back together; None if absent."""
    count = entity.get(f"{name}Parts")
    if count is None:
        return None
    parts = [entity[f"{name}{n}"] for n in range(int(count))]
    if parts and isinstance(parts[0], bytes | bytearray):
        return b"".join(bytes(p) for p in parts)
    return "".join(str(p) for p in parts)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


_NAMES: Final = tuple((f.name, _camel(f.name)) for f in fields(AuditSummary))
"""(field, table property) of every summary field, worked out once: every outcome's rows are built from them."""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
