"""The tenant registry from the operator's side: add, remove, list, pause and resume customer tenants.

Rows are the contract's (`shared.contract.tenants`); the operator writes them with Storage Table Data
Contributor on the registry table, the function only reads them. Every refusal is a `RegistryRefused`
with one line that says what to do instead. A change applies in the function at its next registry read
(within `REGISTRY_REFRESH_SECONDS`), in every instance, without a restart.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.contract.tenants import PARTITION, TenantEntry, from_entity, name_problem, reserve_problem, to_entity

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableEntity


class RegistryRefused(ValueError):
    """The registry cannot do what was asked (a duplicate, an unknown tenant, the home tenant, a bad value)."""


def display_names(table: TableClient) -> dict[str, str]:
    """Tenant id -> display name, for the CLI's per-tenant views; empty when the registry cannot be read.

    Best effort: a view of the queues must not fail because the registry is missing or unreadable.
    """
    try:
        entries, _ = Registry(table).list()
    except Exception:
        return {}
    return {entry.tenant_id: entry.display_name for entry in entries if entry.display_name}


class Registry:
    """One registry table; `home_tenant_id` (HOME_TENANT_ID) is never registered: the function serves it itself."""

    def __init__(self, table: TableClient, home_tenant_id: str | None = None) -> None:
        self._table = table
        self._home = home_tenant_id

    def add(self, tenant_id: str, name: str, *, reserve: int = 0, paused: bool = False) -> TenantEntry:
        """Register a tenant; refused for the home tenant, a duplicate, an empty name or a reserve out of range."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError  # noqa: PLC0415 - lazy

        if tenant_id == self._home:
            msg = (
                f"{tenant_id} is the home tenant (HOME_TENANT_ID): the function serves it with its own identity, "
                "it needs no registry row"
            )
            raise RegistryRefused(msg)
        if problem := name_problem(name) or reserve_problem(reserve):
            raise RegistryRefused(problem)
        entry = TenantEntry(tenant_id, name, reserve, paused, datetime.now(UTC))
        try:
            self._table.create_entity(to_entity(entry))
        except ResourceExistsError:
            existing = self.show(tenant_id)
            msg = f"tenant {tenant_id} is already registered as '{existing.display_name}' (certstate tenants show)"
            raise RegistryRefused(msg) from None
        except ResourceNotFoundError:  # no table yet: local Azurite (deployed, infra creates it)
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._table.create_entity(to_entity(entry))
        return entry

    def show(self, tenant_id: str) -> TenantEntry:
        """The tenant's row; refused if it has none."""
        return from_entity(self._row(tenant_id))

    def _row(self, tenant_id: str) -> TableEntity:
        from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - lazy

        try:
            return self._table.get_entity(PARTITION, tenant_id)
        except ResourceNotFoundError:
            msg = f"tenant {tenant_id} is not registered (certstate tenants list shows who is)"
            raise RegistryRefused(msg) from None

    def list(self) -> tuple[list[TenantEntry], list[str]]:
        """Every row as an entry, by display name; and a line for each row that is not one (hand-edited)."""
        from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - lazy

        entries, problems = [], []
        try:
            rows = list(self._table.query_entities(f"PartitionKey eq '{PARTITION}'"))
        except ResourceNotFoundError:
            return [], []
        for row in rows:
            try:
                entries.append(from_entity(row))
            except (ValueError, TypeError) as err:
                problems.append(f"row {row.get('RowKey')!r} is skipped by the function: {err}")
        return sorted(entries, key=lambda e: (e.display_name.lower(), e.tenant_id)), problems

    def remove(self, tenant_id: str) -> TenantEntry:
        """Delete the tenant's row (refused if it has none); the entry it held."""
        entry = self.show(tenant_id)
        self._table.delete_entity(PARTITION, tenant_id)
        return entry

    def set_paused(self, tenant_id: str, paused: bool) -> tuple[TenantEntry, bool]:
        """Pause or resume the tenant; the entry, and whether it changed."""
        from azure.core import MatchConditions  # noqa: PLC0415 - lazy
        from azure.data.tables import UpdateMode  # noqa: PLC0415 - lazy

        row = self._row(tenant_id)
        entry = from_entity(row)
        if entry.paused == paused:
            return entry, False
        changed = replace(entry, paused=paused, changed_at=datetime.now(UTC))
        self._table.update_entity(
            to_entity(changed),
            mode=UpdateMode.REPLACE,
            etag=row.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
        return changed, True
