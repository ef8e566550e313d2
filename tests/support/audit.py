"""The audit trail as wired, over a table the test made with the SDK (Azurite's development account)."""

from __future__ import annotations

import base64
from typing import Any

from azure.data.tables import TableClient

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from shared.audit import AuditTrail
from shared.tables import SharedKey, TableRows


def lean_rows(table: TableClient) -> TableRows:
    """The lean client of the same table (it writes the rows; the SDK's client reads them back and purges)."""
    return TableRows(table.url, table.table_name, SharedKey(ACCOUNT_NAME, base64.b64decode(ACCOUNT_KEY)))


def audit_trail(table: TableClient, **options: Any) -> AuditTrail:
    """`AuditTrail` writing to `table` (waiting at most 10 s unless told), purging through the SDK's client."""
    return AuditTrail(lean_rows(table), **{"wait_seconds": 10, "purge_table": lambda: table, **options})
