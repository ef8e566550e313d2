"""The one place app settings are read.

`Settings` is built once per process (`load_settings`) from the environment, which
is where the Functions host puts app settings and `local.settings.json` values. It is a plain
pydantic model that reads the variables named by its fields (exactly, case and all); arguments
given to it override them. pydantic-settings would do the same at about a tenth of the app's import
time, most of it for sources (dotenv, secrets, cloud vaults, a CLI) the function never reads.
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from functools import cache
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from shared.contract.audit import DEFAULT_AUDIT_TABLE
from shared.contract.limits import DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE, TRIGGER_QUEUE_NAME_MAX, queue_name_problem
from shared.contract.messages import canonical_guid
from shared.contract.tenants import DEFAULT_REGISTRY_TABLE
from shared.storage import StorageConnection

HOME = "home"
"""The key of the function's own tenant in GRAPH_TENANT_WRITE_BUDGETS when HOME_TENANT_ID is not set."""


class CredentialMode(StrEnum):
    """How the function obtains its Graph token."""

    MANAGED_IDENTITY = "managedIdentity"
    DEFAULT = "default"


def _trigger_queue_name(value: str) -> str:
    if problem := queue_name_problem(value, TRIGGER_QUEUE_NAME_MAX):
        raise ValueError(problem)
    return value


def _queue_name(value: str) -> str:
    if problem := queue_name_problem(value):
        raise ValueError(problem)
    return value


TriggerQueueName = Annotated[str, AfterValidator(_trigger_queue_name)]
"""A queue the host may poison from: short enough that `<name>-poison` is still valid."""
QueueName = Annotated[str, AfterValidator(_queue_name)]


def _blank_none(value: object) -> object:
    """An empty app setting means "not set" (Bicep and the portal write empty strings)."""
    return None if value == "" else value


def _items(value: object) -> object:
    """A comma-separated app setting as a list (spaces and empty items ignored)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _budget_pairs(value: object) -> object:
    """`<tenant>=<writes>` items as a dict; the budget is checked by the field's type."""
    items = _items(value)
    if not isinstance(items, list):
        return items
    pairs: dict[str, str] = {}
    for item in items:
        tenant, sep, budget = item.partition("=")
        if not sep:
            msg = f"{item!r} is not <tenant GUID or home>=<writes per window>"
            raise ValueError(msg)
        key = tenant.strip().lower()
        if key in pairs:
            msg = f"tenant {key} is given twice"
            raise ValueError(msg)
        pairs[key] = budget.strip()
    return pairs


def _budget_key(value: str) -> str:
    return HOME if value.lower() == HOME else canonical_guid(value)


Unset = Annotated[str | None, BeforeValidator(_blank_none)]
"""An optional app setting: empty (as Bicep and the portal write it) is the same as absent."""
TenantGuid = Annotated[str, AfterValidator(canonical_guid)]
"""A tenant id, lower-cased: tenants compare case-insensitively."""
WriteBudget = Annotated[int, Field(ge=1, le=10_000)]


class Settings(BaseModel):
    """App settings the code reads; names match the Functions app settings exactly."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    GRAPH_BASE_URL: str = "https://graph.microsoft.com/beta"
    INPUT_QUEUE_NAME: TriggerQueueName = DEFAULT_INPUT_QUEUE
    RESULT_QUEUE_NAME: QueueName = DEFAULT_RESULT_QUEUE
    CREDENTIAL_MODE: CredentialMode = CredentialMode.MANAGED_IDENTITY
    MANAGED_IDENTITY_CLIENT_ID: Unset = None  # empty: the system-assigned identity
    GRAPH_CONNECT_TIMEOUT_SECONDS: Annotated[float, Field(gt=0, le=60)] = 5.0
    GRAPH_READ_TIMEOUT_SECONDS: Annotated[float, Field(gt=0, le=300)] = 30.0
    GRAPH_MAX_ATTEMPTS: Annotated[int, Field(ge=1, le=20)] = 4
    GRAPH_MAX_WAIT_SECONDS: Annotated[float, Field(ge=0, le=540)] = 60.0
    GRAPH_WRITE_BUDGET: WriteBudget = 99
    """A tenant's writes per window for the whole deployment, every instance together (docs/tenants.md)."""
    GRAPH_WRITE_WINDOW_SECONDS: Annotated[float, Field(gt=0, le=3600)] = 20.0
    BREAKER_FAILURE_THRESHOLD: Annotated[int, Field(ge=1, le=1000)] = 5
    BREAKER_COOLDOWN_SECONDS: Annotated[float, Field(gt=0, le=600)] = 15.0
    BREAKER_MAX_COOLDOWN_SECONDS: Annotated[float, Field(gt=0, le=3600)] = 120.0
    DEFERRAL_MAX_SECONDS: Annotated[float, Field(ge=0, le=6 * 24 * 3600)] = 3600.0
    APPLICATIONINSIGHTS_CONNECTION_STRING: Unset = None  # unset: no telemetry export (tests, local stack)
    AUDIT_TABLE_NAME: Annotated[str, Field(pattern=r"^([A-Za-z][A-Za-z0-9]{2,62})?$")] = DEFAULT_AUDIT_TABLE
    AUDIT_RETENTION_DAYS: Annotated[int, Field(ge=1, le=3650)] = 400
    AUDIT_WAIT_SECONDS: Annotated[float, Field(gt=0, le=30)] = 3.0
    """How long an outcome waits for its audit row; past it the outcome goes out without it (docs/operations.md)."""
    GRAPH_TENANT_WRITE_BUDGETS: Annotated[
        dict[Annotated[str, AfterValidator(_budget_key)], WriteBudget], BeforeValidator(_budget_pairs)
    ] = Field(default_factory=dict)
    """Per-tenant overrides of GRAPH_WRITE_BUDGET: `<tenant GUID or home>=<writes>,...` (docs/tenants.md)."""
    GRAPH_PACING_TABLE_NAME: Annotated[str, Field(pattern=r"^([A-Za-z][A-Za-z0-9]{2,62})?$")] = "certstatepacing"
    """The table of the shared write budgets (one row per tenant); empty: each instance paces alone at its split."""
    GRAPH_PACING_MAX_INSTANCES: Annotated[int, Field(ge=1, le=1000)] = 1
    """The most instances that may run at once (infra's maximumInstanceCount): the split used without the table."""
    GRAPH_SLOT_WAIT_SECONDS: Annotated[float, Field(ge=0, le=60)] = 2.0
    """How long an invocation waits for its tenant's next write slot before deferring the message, when
    SERVED_TENANT_IDS is set; serving one tenant, it waits up to GRAPH_MAX_WAIT_SECONDS (docs/tenants.md)."""
    HOME_TENANT_ID: Annotated[TenantGuid | None, BeforeValidator(_blank_none)] = None
    SERVED_TENANT_IDS: Annotated[tuple[TenantGuid, ...], BeforeValidator(_items)] = ()
    MULTITENANT_APP_CLIENT_ID: Annotated[TenantGuid | None, BeforeValidator(_blank_none)] = None
    AZURE_AUTHORITY_HOST: Unset = None
    REGISTRY_TABLE_NAME: Annotated[str, Field(pattern=r"^([A-Za-z][A-Za-z0-9]{2,62})?$")] = DEFAULT_REGISTRY_TABLE
    """The tenant registry (docs/tenants.md); read only with MULTITENANT_APP_CLIENT_ID set; empty: no registry."""
    REGISTRY_REFRESH_SECONDS: Annotated[float, Field(ge=1, le=600)] = 30.0
    """How old the registry read may be before a lookup reads it again: how long a change takes to apply."""

    # The host's storage connection (the bindings' `connection`), read here too for deferrals,
    # the audit table and the queue depths.
    storage_connection_string: Unset = Field(default=None, validation_alias="AzureWebJobsStorage")
    storage_queue_service_uri: Unset = Field(default=None, validation_alias="AzureWebJobsStorage__queueServiceUri")
    storage_table_service_uri: Unset = Field(default=None, validation_alias="AzureWebJobsStorage__tableServiceUri")
    storage_client_id: Unset = Field(default=None, validation_alias="AzureWebJobsStorage__clientId")

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, given: Any) -> Any:  # noqa: ANN401 - whatever pydantic was given
        """The app settings in the environment, under what was given explicitly (tests, tools)."""
        if not isinstance(given, dict):
            return given
        names = (field.validation_alias or name for name, field in cls.model_fields.items())
        found = {name: os.environ[name] for name in names if isinstance(name, str) and name in os.environ}
        return {**found, **given}

    @field_validator("GRAPH_BASE_URL")
    @classmethod
    def _https_unless_loopback(cls, value: str) -> str:
        """Tokens go only over TLS; plain http is for emulators on this machine."""
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            msg = "must be an absolute http(s) URL"
            raise ValueError(msg)
        if parts.query or parts.fragment or parts.username or parts.password:
            msg = "must not carry a query, fragment or credentials"
            raise ValueError(msg)
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            msg = "must be https (plain http is allowed only for a loopback host)"
            raise ValueError(msg)
        return value.rstrip("/")

    @field_validator("AZURE_AUTHORITY_HOST")
    @classmethod
    def _authority_is_https(cls, value: str | None) -> str | None:
        """azure-identity refuses anything but https (even on loopback), so say so at start-up."""
        if value is None:
            return None
        parts = urlsplit(value if "://" in value else f"https://{value}")
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query or parts.fragment:
            msg = "must be an https origin such as https://login.microsoftonline.us"
            raise ValueError(msg)
        return f"https://{parts.netloc}"

    @model_validator(mode="after")
    def _tenants_are_consistent(self) -> Settings:
        """Refuse a tenant set the function could not serve, before any message arrives."""
        served = set(self.SERVED_TENANT_IDS)
        if len(served) != len(self.SERVED_TENANT_IDS):
            msg = "SERVED_TENANT_IDS lists a tenant twice"
            raise ValueError(msg)
        if served and self.MULTITENANT_APP_CLIENT_ID is None:
            msg = "MULTITENANT_APP_CLIENT_ID is required when SERVED_TENANT_IDS is not empty"
            raise ValueError(msg)
        if self.HOME_TENANT_ID in served:
            msg = "HOME_TENANT_ID is served by the managed identity itself; do not list it in SERVED_TENANT_IDS"
            raise ValueError(msg)
        if self.HOME_TENANT_ID in self.GRAPH_TENANT_WRITE_BUDGETS and HOME in self.GRAPH_TENANT_WRITE_BUDGETS:
            msg = "GRAPH_TENANT_WRITE_BUDGETS gives the home tenant twice (as home and as HOME_TENANT_ID)"
            raise ValueError(msg)
        known = served | {HOME} | ({self.HOME_TENANT_ID} if self.HOME_TENANT_ID else set())
        if unknown := sorted(set(self.GRAPH_TENANT_WRITE_BUDGETS) - known):
            msg = f"GRAPH_TENANT_WRITE_BUDGETS names tenants that are not served: {', '.join(unknown)}"
            raise ValueError(msg)
        return self

    @property
    def storage(self) -> StorageConnection:
        """The account the bindings use, for what the bindings cannot do (deferrals, audit, queue depths)."""
        return StorageConnection(
            self.storage_connection_string,
            self.storage_queue_service_uri,
            self.storage_client_id,
            self.storage_table_service_uri,
        )

    @property
    def has_registry(self) -> bool:
        """Whether the function reads the tenant registry: a table name, a table service, the multi-tenant app."""
        storage = self.storage
        return bool(
            self.REGISTRY_TABLE_NAME and self.MULTITENANT_APP_CLIENT_ID and storage.configured and storage.has_tables
        )

    @property
    def serves_other_tenants(self) -> bool:
        """Whether messages for tenants other than home may be served (the short slot wait applies then)."""
        return bool(self.SERVED_TENANT_IDS) or self.has_registry

    @property
    def graph_scope(self) -> str:
        """`<scheme://host of GRAPH_BASE_URL>/.default`, so national clouds get their own audience."""
        parts = urlsplit(self.GRAPH_BASE_URL)
        return f"{parts.scheme}://{parts.netloc}/.default"

    def write_budget(self, tenant_id: str | None) -> int:
        """The tenant's writes per window: its override, else GRAPH_WRITE_BUDGET (None = the home tenant)."""
        overrides = self.GRAPH_TENANT_WRITE_BUDGETS
        if tenant_id is None or tenant_id == self.HOME_TENANT_ID:
            return overrides.get(HOME, overrides.get(self.HOME_TENANT_ID or HOME, self.GRAPH_WRITE_BUDGET))
        return overrides.get(tenant_id, self.GRAPH_WRITE_BUDGET)

    def split_of(self, budget: int) -> float:
        """One instance's share of a tenant's `budget` when it cannot coordinate (no table, or it fails).

        `(budget + 1) / N - 1` writes per window, a fraction when N is large: an unsynchronised, evenly
        spaced pacer may land `floor(split) + 1` writes in a window, so N instances together stay within
        budget + 1, the tenant's limit less its reserve, at any N. From N = budget + 1 on no share is
        left: 0, and an instance without the table writes nothing to the tenant until it answers again.
        """
        return max(0.0, (budget + 1) / self.GRAPH_PACING_MAX_INSTANCES - 1)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cache
def load_settings() -> Settings:
    """Read the environment once per process."""
    return Settings()
