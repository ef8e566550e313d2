"""The Graph transport's one reach past urllib3's public API holds only on the releases it was tested on."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import requests
from packaging.specifiers import SpecifierSet
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.graph.transport import URLLIB3_TESTED, WatchedAdapter

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


def test_the_installed_urllib3_is_one_the_watched_connections_were_built_for():
    """An upgrade past the tested range fails here, not silently in a trickling answer that is never cut."""
    installed = version("urllib3")
    assert SpecifierSet(URLLIB3_TESTED).contains(installed), (
        f"urllib3 {installed} is outside {URLLIB3_TESTED}: re-run tests/integration/test_graph_client.py "
        "(the trickling answers) and widen URLLIB3_TESTED only if they pass"
    )


def test_requirements_pin_urllib3_inside_the_tested_range():
    pins = re.findall(r"^urllib3==(\S+)", REQUIREMENTS.read_text(), flags=re.M)
    assert len(pins) == 1
    assert SpecifierSet(URLLIB3_TESTED).contains(pins[0])


def test_the_adapter_pools_hand_their_sockets_over():
    """What the seam relies on: the pool manager builds its pools from `pool_classes_by_scheme`."""
    with requests.Session() as session:
        adapter = WatchedAdapter()
        session.mount("http://", adapter)
        pool = adapter.poolmanager.connection_from_url("http://127.0.0.1:9/")
        secure = adapter.poolmanager.connection_from_url("https://127.0.0.1:9/")
    assert isinstance(pool, HTTPConnectionPool)
    assert isinstance(secure, HTTPSConnectionPool)
    assert issubclass(pool.ConnectionCls, HTTPConnection)
    assert pool.ConnectionCls is not HTTPConnection
    assert issubclass(secure.ConnectionCls, HTTPSConnection)
    assert secure.ConnectionCls is not HTTPSConnection
