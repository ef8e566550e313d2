"""Azurite from npm: starts on loopback, serves queues and tables, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from devstack.azurite import REPO_ROOT, Azurite, AzuriteNotInstalledError


def test_session_instance_serves_queues(azurite: Azurite, queue_names) -> None:
    assert azurite.connection_string.endswith(f"QueueEndpoint=http://127.0.0.1:{azurite.port}/devstoreaccount1;")
    name = queue_names("smoke")
    with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        queue = service.get_queue_client(name)
        queue.create_queue()
        queue.send_message("hello")
        [message] = list(queue.receive_messages(max_messages=1))
        assert message.content == "hello"
        assert message.dequeue_count == 1


def test_session_instance_serves_tables(azurite: Azurite) -> None:
    assert f"TableEndpoint=http://127.0.0.1:{azurite.table_port}/devstoreaccount1;" in azurite.connection_string
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        table = service.create_table_if_not_exists("smoke")
        table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 1})
        assert table.get_entity("p", "r")["value"] == 1


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_ends_process_group_and_deletes_data() -> None:
    with Azurite() as service:
        groups, data_dir, ports = (service.pid, service.table_pid), service.data_dir, (service.port, service.table_port)
        assert all(_group_alive(pgid) for pgid in groups)
        assert data_dir.is_dir()
        for pgid in groups:
            assert os.getpgid(pgid) == pgid, "each Azurite service must lead its own process group"
    assert not any(_group_alive(pgid) for pgid in groups)
    assert not data_dir.exists()
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5)
    service.stop()  # a second stop is harmless


def test_missing_binary_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(AzuriteNotInstalledError, match="npm ci"):
        Azurite(binary=tmp_path / "azurite-queue").start()


def test_pinned_version_is_installed() -> None:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    installed = json.loads((REPO_ROOT / "node_modules" / "azurite" / "package.json").read_text())
    assert package["devDependencies"]["azurite"] == "3.37.0"
    assert installed["version"] == "3.37.0"


def test_cli_prints_connection_string_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.azurite", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # banner
        connection_string = proc.stdout.readline().strip()
        assert connection_string.startswith("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;")
        with QueueServiceClient.from_connection_string(connection_string) as service:
            assert list(service.list_queues()) == []
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
