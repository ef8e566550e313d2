"""Where the queues are: options first, then the environment, then local Azurite (options.TARGETS)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from producer.cli.exits import UsageError
from producer.sender import StorageAccount


@dataclass(frozen=True)
class Source:
    """What the options and the environment name; neither means local Azurite."""

    connection_string: str | None
    account_url: str | None

    @property
    def local_default(self) -> bool:
        """Nothing was named, so the target is Azurite's well-known account on 127.0.0.1:10001."""
        return self.connection_string is None and self.account_url is None


def source(args: argparse.Namespace) -> Source:
    """The storage target from the options, then the environment."""
    if args.account_url is not None and args.connection_string is not None:
        msg = "give --connection-string or --account-url, not both"
        raise UsageError(msg)
    if args.account_url is not None or args.connection_string is not None:
        return Source(args.connection_string, args.account_url)
    connection_string = os.environ.get("CERTSTATE_CONNECTION_STRING") or os.environ.get("AzureWebJobsStorage")  # noqa: SIM112 - the Functions setting's exact name
    if connection_string:
        return Source(connection_string, None)
    return Source(None, os.environ.get("AzureWebJobsStorage__queueServiceUri") or None)  # noqa: SIM112


def account(args: argparse.Namespace) -> StorageAccount:
    """The storage account the command works on (nothing is contacted yet)."""
    where = source(args)
    return StorageAccount(
        where.connection_string,
        account_url=where.account_url,
        retry_total=args.retries,
        connection_timeout=args.timeout,
    )


def unreachable_hint(args: argparse.Namespace) -> str:
    """What to add when the queue service cannot be reached: local Azurite may simply not be running."""
    if source(args).local_default:
        return " (is the local stack up? python -m devstack up; or pass --connection-string)"
    return ""
