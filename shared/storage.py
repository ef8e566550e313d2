"""Queue and table clients for the function's own storage account, from the `AzureWebJobsStorage` connection.

The bindings read the same connection, so the code reaches exactly the account and identity the host
uses: a connection string locally (Azurite, `UseDevelopmentStorage=true`), and in Azure the
identity-based form (`AzureWebJobsStorage__queueServiceUri` + `__credential=managedidentity` +
`__clientId`, and `__tableServiceUri` for the audit table). The storage SDKs are imported on first
use, so cold start does not pay for them.

Every client is bounded (`STORAGE_TIMEOUTS`, one retry): the SDKs' defaults (300 s per read, retries
15 s apart on queues, ten on tables) would let a stalled storage service hold an invocation for minutes.
A read that timed out is never retried: the write may have taken effect, and a second one would be a
duplicate (a deferred copy sent twice).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from shared.identity import IDENTITY_TRANSPORT

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient

STORAGE_TIMEOUTS: Final[dict[str, float]] = {"connection_timeout": 2, "read_timeout": 5}
"""Per try: the account answers in milliseconds when healthy; a black hole costs 2 s, a stall 5 s."""
STORAGE_OPERATION_SECONDS: Final = 12
"""A whole table operation, retry included (azure-core's `timeout`); a queue one is bounded by its tries."""


def _queue_retry() -> Any:  # noqa: ANN401 - the SDK's policy type is private to it
    """One retry after about a second, for a refused connection or a 5xx; never after a read timeout."""
    from azure.storage.queue import ExponentialRetry  # noqa: PLC0415 - cold start

    return ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=1, random_jitter_range=0, retry_read=0)


def _table_options() -> dict[str, Any]:
    """The same rule for tables: one retry, none after a read timeout, the whole operation bounded."""
    return {
        **STORAGE_TIMEOUTS,
        "retry_total": 1,
        "retry_read": 0,
        "retry_backoff_factor": 0.5,
        "retry_backoff_max": 2,
        "timeout": STORAGE_OPERATION_SECONDS,
    }


@dataclass(frozen=True)
class StorageConnection:
    """The `AzureWebJobsStorage` app settings, in either form the host accepts (see `Settings`)."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None
    table_service_uri: str | None = None

    @property
    def configured(self) -> bool:
        """Whether the code can reach the account itself (tests of the pipeline alone have no account)."""
        return bool(self.connection_string or self.queue_service_uri)

    @property
    def has_tables(self) -> bool:
        """Whether the connection names a table service (a queue-only one must not make the SDK guess).

        Identity-based: its URI is set. A connection string: it lists a table endpoint, or lists no
        endpoint at all (the SDK derives them from the account, as in Azure).
        """
        if self.connection_string:
            keys = {part.partition("=")[0].strip().lower() for part in self.connection_string.split(";")}
            return "tableendpoint" in keys or not keys & {"queueendpoint", "blobendpoint"}
        return bool(self.table_service_uri)

    def queue(self, name: str) -> QueueClient:
        """A client for one queue of the account; raw text in and out (no SDK-side encoding)."""
        return self.queue_service().get_queue_client(name)

    def queue_service(self) -> QueueServiceClient:
        """A client for the account's queue service."""
        from azure.storage.queue import QueueServiceClient  # noqa: PLC0415 - cold start

        options = {**STORAGE_TIMEOUTS, "retry_policy": _queue_retry()}
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **options)
        if not self.queue_service_uri:
            msg = "neither AzureWebJobsStorage nor AzureWebJobsStorage__queueServiceUri is set"
            raise ValueError(msg)
        return QueueServiceClient(self.queue_service_uri, credential=self.credential(), **options)

    def table_service(self) -> TableServiceClient:
        """A client for the account's table service."""
        from azure.data.tables import TableServiceClient  # noqa: PLC0415 - cold start

        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string, **_table_options())
        if not self.table_service_uri:
            msg = "neither AzureWebJobsStorage nor AzureWebJobsStorage__tableServiceUri is set"
            raise ValueError(msg)
        return TableServiceClient(self.table_service_uri, credential=self.credential(), **_table_options())

    def credential(self) -> TokenCredential:
        """The identity storage is reached with (one per process, shared by every client)."""
        return _storage_credential(self.client_id)


@cache
def _storage_credential(client_id: str | None) -> TokenCredential:
    """One credential for every storage client of the process, bounded like Graph's.

    Shared, so the storage token the audit trail fetches on the first message is the one a deferral
    uses later: a deferral during an identity outage still has a token (until it expires).
    """
    from azure.identity import ManagedIdentityCredential  # noqa: PLC0415 - cold start

    return ManagedIdentityCredential(client_id=client_id, **IDENTITY_TRANSPORT)


class QueueSender:
    """Sends to one queue through a client built on first use and shared by every invocation.

    Each send is one request, bounded in time, never retried by the SDK: a retry after a timeout
    whose first attempt took effect would put a second message on the queue. Whoever sends decides
    what an unknown result means (the pipeline takes its deferral record back, docs/design.md).
    """

    def __init__(self, connection: StorageConnection, name: str) -> None:
        self._connection = connection
        self._name = name
        self._lock = threading.Lock()
        self._client: QueueClient | None = None

    def send(self, text: str, visibility_timeout: int) -> None:
        """Enqueue `text`, invisible for `visibility_timeout` seconds; raises if the result is not known."""
        with self._lock:
            if self._client is None:
                self._client = self._connection.queue(self._name)
            client = self._client
        client.send_message(text, visibility_timeout=visibility_timeout, retry_total=0)
