"""The one place app settings are read.

`Settings` is built once per process (`load_settings`) from the environment, which
is where the Functions host puts app settings and `local.settings.json` values.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contract.audit import DEFAULT_AUDIT_TABLE
from shared.contract.limits import DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE, TRIGGER_QUEUE_NAME_MAX, queue_name_problem
from shared.storage import StorageConnection


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


class Settings(BaseSettings):
    """App settings the code reads; names match the Functions app settings exactly."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    GRAPH_BASE_URL: str = "https://graph.microsoft.com/beta"
    INPUT_QUEUE_NAME: TriggerQueueName = DEFAULT_INPUT_QUEUE
    RESULT_QUEUE_NAME: QueueName = DEFAULT_RESULT_QUEUE
    CREDENTIAL_MODE: CredentialMode = CredentialMode.MANAGED_IDENTITY
    MANAGED_IDENTITY_CLIENT_ID: str | None = None
    GRAPH_CONNECT_TIMEOUT_SECONDS: Annotated[float, Field(gt=0, le=60)] = 5.0
    GRAPH_READ_TIMEOUT_SECONDS: Annotated[float, Field(gt=0, le=300)] = 30.0
    GRAPH_MAX_ATTEMPTS: Annotated[int, Field(ge=1, le=20)] = 4
    GRAPH_MAX_WAIT_SECONDS: Annotated[float, Field(ge=0, le=540)] = 60.0
    GRAPH_WRITE_BUDGET: Annotated[int, Field(ge=1, le=10_000)] = 49
    GRAPH_WRITE_WINDOW_SECONDS: Annotated[float, Field(gt=0, le=3600)] = 20.0
    BREAKER_FAILURE_THRESHOLD: Annotated[int, Field(ge=1, le=1000)] = 5
    BREAKER_COOLDOWN_SECONDS: Annotated[float, Field(gt=0, le=600)] = 15.0
    BREAKER_MAX_COOLDOWN_SECONDS: Annotated[float, Field(gt=0, le=3600)] = 120.0
    DEFERRAL_MAX_SECONDS: Annotated[float, Field(ge=0, le=6 * 24 * 3600)] = 3600.0
    APPLICATIONINSIGHTS_CONNECTION_STRING: str | None = None  # unset: no telemetry export (tests, local stack)
    AUDIT_TABLE_NAME: Annotated[str, Field(pattern=r"^([A-Za-z][A-Za-z0-9]{2,62})?$")] = DEFAULT_AUDIT_TABLE
    AUDIT_RETENTION_DAYS: Annotated[int, Field(ge=1, le=3650)] = 400

    # The host's storage connection (the bindings' `connection`), read here too for deferrals,
    # the audit table and the queue depths.
    storage_connection_string: str | None = Field(default=None, validation_alias="AzureWebJobsStorage")
    storage_queue_service_uri: str | None = Field(default=None, validation_alias="AzureWebJobsStorage__queueServiceUri")
    storage_table_service_uri: str | None = Field(default=None, validation_alias="AzureWebJobsStorage__tableServiceUri")
    storage_client_id: str | None = Field(default=None, validation_alias="AzureWebJobsStorage__clientId")

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

    @field_validator("MANAGED_IDENTITY_CLIENT_ID")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        """An empty app setting means system-assigned identity."""
        return value or None

    @property
    def storage(self) -> StorageConnection:
        """The account the bindings use, for what the bindings cannot do (deferrals, audit, queue depths)."""
        return StorageConnection(
            self.storage_connection_string or None,
            self.storage_queue_service_uri or None,
            self.storage_client_id or None,
            self.storage_table_service_uri or None,
        )

    @property
    def graph_scope(self) -> str:
        """`<scheme://host of GRAPH_BASE_URL>/.default`, so national clouds get their own audience."""
        parts = urlsplit(self.GRAPH_BASE_URL)
        return f"{parts.scheme}://{parts.netloc}/.default"


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
