"""Where the queues are: options first, then the environment, then local Azurite."""

from __future__ import annotations

import argparse
import os

from producer.cli.exits import UsageError
from producer.sender import StorageAccount

TARGETS = """\
where the queues are (commands send, results, replay, stats):
  local Azurite on 127.0.0.1:10001 (python -m devstack.azurite) unless one of these is given, first wins:
    --account-url https://<account>.queue.core.windows.net   signs in with DefaultAzureCredential
                                                              (az login, managed identity, AZURE_* variables)
    --connection-string "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=..."
    $CERTSTATE_CONNECTION_STRING, then $AzureWebJobsStorage (a connection string),
    then $AzureWebJobsStorage__queueServiceUri (an account URL, as the deployed app has it)
  queue names: --input-queue / --result-queue, else $INPUT_QUEUE_NAME / $RESULT_QUEUE_NAME,
    else certificate-state-updates / certificate-state-results (the app's defaults)"""


def account(args: argparse.Namespace) -> StorageAccount:
    """The storage target from the options, then the environment, then local Azurite."""
    account_url = args.account_url
    connection_string = args.connection_string
    if account_url is not None and connection_string is not None:
        msg = "give --connection-string or --account-url, not both"
        raise UsageError(msg)
    if account_url is None and connection_string is None:
        connection_string = os.environ.get("CERTSTATE_CONNECTION_STRING") or os.environ.get("AzureWebJobsStorage")  # noqa: SIM112 - the Functions setting's exact name
        if not connection_string:
            connection_string = None
            account_url = os.environ.get("AzureWebJobsStorage__queueServiceUri") or None  # noqa: SIM112
    args.local_default = account_url is None and connection_string is None
    return StorageAccount(
        connection_string, account_url=account_url, retry_total=args.retries, connection_timeout=args.timeout
    )
