"""Queue clients for the function's own storage account, from the `AzureWebJobsStorage` connection.

The bindings read the same connection, so the code reaches exactly the account and identity the host
uses: a connection string locally (Azurite, `UseDevelopmentStorage=true`), and in Azure the
identity-based form (`AzureWebJobsStorage__queueServiceUri` + `__credential=managedidentity` +
`__clientId`). azure-storage-queue is imported on first use, so cold start does not pay for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient


@dataclass(frozen=True)
class StorageConnection:
    """The `AzureWebJobsStorage` app settings, in either form the host accepts (see `Settings`)."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None

    def queue(self, name: str) -> QueueClient:
        """A client for one queue of the account; raw text in and out (no SDK-side encoding)."""
        from azure.storage.queue import QueueClient  # noqa: PLC0415 - cold start

        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, name)
        if not self.queue_service_uri:
            msg = "neither AzureWebJobsStorage nor AzureWebJobsStorage__queueServiceUri is set"
            raise ValueError(msg)
        from azure.identity import ManagedIdentityCredential  # noqa: PLC0415 - cold start

        credential = ManagedIdentityCredential(client_id=self.client_id or None)
        return QueueClient(self.queue_service_uri, name, credential=credential)


class QueueSender:
    """Sends to one queue through a client built on first use and shared by every invocation."""

    def __init__(self, connection: StorageConnection, name: str) -> None:
        self._connection = connection
        self._name = name
        self._lock = threading.Lock()
        self._client: QueueClient | None = None

    def send(self, text: str, visibility_timeout: int) -> None:
        """Enqueue `text`, invisible for `visibility_timeout` seconds."""
        with self._lock:
            if self._client is None:
                self._client = self._connection.queue(self._name)
            client = self._client
        client.send_message(text, visibility_timeout=visibility_timeout)
