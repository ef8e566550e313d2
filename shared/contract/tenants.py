"""The tenant registry's table layout: one row per served customer tenant (docs/tenants.md, "The registry").

The function reads it (read-only role) and the `certstate tenants` commands write it (the operator's
role). PartitionKey `tenant`, RowKey the tenant GUID in lower case; properties `displayName`,
`writeReserve` (writes per window other tools use in that tenant), `paused` and `changedAt`. A row that
does not read as an entry (a hand-edited one) is skipped by the function and named by the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from shared.contract.messages import canonical_guid

DEFAULT_REGISTRY_TABLE: Final = "certstatetenants"
PARTITION: Final = "tenant"
NAME_MAX: Final = 256
INTUNE_TENANT_WRITE_LIMIT: Final = 200
"""Intune's writes per 20 s per tenant for all apps together: a reserve is out of this."""


@dataclass(frozen=True)
class TenantEntry:
    """One served tenant: its name for people, the writes per window left to other tools, and whether it waits."""

    tenant_id: str
    display_name: str = ""
    write_reserve: int = 0
    paused: bool = False
    changed_at: datetime | None = None


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a display name (it is shown in tables and the workbook), or None."""
    if not name.strip():
        return "the display name is empty"
    if len(name) > NAME_MAX:
        return f"the display name is longer than {NAME_MAX} characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "the display name holds a control character"
    return None


def reserve_problem(reserve: int) -> str | None:
    """Why `reserve` cannot be a tenant's write reserve, or None."""
    if not 0 <= reserve < INTUNE_TENANT_WRITE_LIMIT:
        return f"the write reserve must be 0-{INTUNE_TENANT_WRITE_LIMIT - 1} writes per window, not {reserve}"
    return None


def to_entity(entry: TenantEntry) -> dict[str, Any]:
    """The table row of an entry."""
    return {
        "PartitionKey": PARTITION,
        "RowKey": entry.tenant_id,
        "displayName": entry.display_name,
        "writeReserve": entry.write_reserve,
        "paused": entry.paused,
        "changedAt": entry.changed_at or datetime.now(UTC),
    }


def from_entity(entity: Mapping[str, Any]) -> TenantEntry:
    """The entry a row holds; ValueError if it is not one (wrong key, types or values)."""
    if entity.get("PartitionKey") != PARTITION:
        msg = "not a tenant row"
        raise ValueError(msg)
    tenant = canonical_guid(str(entity.get("RowKey", "")))
    name, reserve, paused = entity.get("displayName", ""), entity.get("writeReserve", 0), entity.get("paused", False)
    if not isinstance(name, str) or (name and name_problem(name)):
        msg = f"tenant {tenant}: displayName is not a display name"
        raise ValueError(msg)
    if isinstance(reserve, bool) or not isinstance(reserve, int) or reserve_problem(reserve):
        msg = f"tenant {tenant}: writeReserve is not 0-{INTUNE_TENANT_WRITE_LIMIT - 1}"
        raise ValueError(msg)
    if not isinstance(paused, bool):
        msg = f"tenant {tenant}: paused is not a boolean"
        raise ValueError(msg)
    changed = entity.get("changedAt")
    return TenantEntry(tenant, name, reserve, paused, changed if isinstance(changed, datetime) else None)


def budget_with_reserve(budget: int, reserve: int) -> int:
    """A tenant's writes per window for the deployment, `budget` scaled to what its reserve leaves of Intune's limit."""
    return max(1, budget * (INTUNE_TENANT_WRITE_LIMIT - reserve) // INTUNE_TENANT_WRITE_LIMIT)
