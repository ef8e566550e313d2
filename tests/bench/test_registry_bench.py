"""bench.registry measures what docs/benchmarks.md reports: a change applies within one interval and one read."""

from __future__ import annotations

import pytest

from bench.registry import measure
from devstack.azurite import Azurite


@pytest.mark.e2e
def test_a_paused_row_is_seen_within_the_refresh_interval_and_one_read(azurite: Azurite):
    figures = measure(azurite.connection_string, count=40, refresh=1.0)
    assert figures["tenants"] == 40
    assert 0 < figures["changeAppliedSeconds"] <= figures["changeBoundSeconds"] + 1.0  # a 10 ms poll, a busy host
    assert figures["registryKiB"] > 0
    assert figures["lookupUsViaRegistry"] > 0
