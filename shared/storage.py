"""Queue and table clients for the function's own storage account, from the `AzureWebJobsStorage` connection.

The bindings read the same connection, so the code reaches exactly the account and identity the host
uses: a connection string locally (Azurite, `UseDevelopmentStorage=true`), and in Azure the
identity-based form (`AzureWebJobsStorage__queueServiceUri` + `__credential=managedidentity` +
`__clientId`, and `__tableServiceUri` for the audit table). The storage SDKs are imported on first
use, so cold start does not pay for them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from shared.identity import IDENTITY_TRANSPORT

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient


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

        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string)
        if not self.queue_service_uri:
            msg = "neither AzureWebJobsStorage nor AzureWebJobsStorage__queueServiceUri is set"
            raise ValueError(msg)
        return QueueServiceClient(self.queue_service_uri, credential=self._credential())

    def table_service(self) -> TableServiceClient:
        """A client for the account's table service."""
        from azure.data.tables import TableServiceClient  # noqa: PLC0415 - cold start

        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string)
        if not self.table_service_uri:
            msg = "neither AzureWebJobsStorage nor AzureWebJobsStorage__tableServiceUri is set"
            raise ValueError(msg)
        return TableServiceClient(self.table_service_uri, credential=self._credential())

    def _credential(self) -> TokenCredential:
        return _storage_credential(self.client_id or None)


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

    def __init__(
        self, connection: StorageConnection, name: str, *, connect_timeout: float = 3.0, read_timeout: float = 5.0
    ) -> None:
        self._connection = connection
        self._name = name
        self._lock = threading.Lock()
        self._client: QueueClient | None = None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    def send(self, text: str, visibility_timeout: int) -> None:
        """Enqueue `text`, invisible for `visibility_timeout` seconds; raises if the result is not known."""
        with self._lock:
            if self._client is None:
                self._client = self._connection.queue(self._name)
            client = self._client
        client.send_message(
            text,
            visibility_timeout=visibility_timeout,
            connection_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            retry_total=0,
        )
