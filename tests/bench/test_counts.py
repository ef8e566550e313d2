"""The counts `python -m bench` reports, kept as tests: token requests, TCP connections, early retries.

No timing is asserted (timing belongs to docs/benchmarks.md); these hold on any machine. The
pipeline is the production one (`build_pipeline`), on the real ManagedIdentityCredential against
the identity emulator and on `requests` against the Graph simulator, which counts connections.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from bench.messages import bodies
from bench.services import UNLIMITED_WRITES, CountingGraphSimulator
from devstack.identity_emulator import IdentityEmulator
from shared.contract.envelope import ENVELOPE_KEY
from shared.host_config import queue_options
from shared.pipeline import CertStatePipeline, Delivery
from shared.settings import Settings
from shared.wiring import build_pipeline


@dataclass
class Stack:
    identity: IdentityEmulator
    graph: CountingGraphSimulator

    def pipeline(self, budget: int = 10_000, window_s: float = 0.01) -> CertStatePipeline:
        settings = Settings(
            GRAPH_BASE_URL=self.graph.base_url,
            GRAPH_WRITE_BUDGET=budget,
            GRAPH_WRITE_WINDOW_SECONDS=window_s,
        )
        return build_pipeline(settings, queue_options(app_settings={}), requeue=requeue)  # the queue, in memory


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    key = secrets.token_bytes(32)
    with (
        IdentityEmulator(signing_key=key) as identity,
        CountingGraphSimulator(key, write_limit=UNLIMITED_WRITES) as graph,
    ):
        for name, value in identity.env().items():
            monkeypatch.setenv(name, value)
        yield Stack(identity, graph)


def handle(pipeline: CertStatePipeline, body: bytes) -> str:
    """The message's status; a deferred one comes back after its delay, as the queue would return it."""
    delivery = Delivery(message_id=str(uuid.uuid4()), dequeue_count=1)
    while (result := pipeline.handle(body, delivery)) is None:
        text, delay = REQUEUED.pop(delivery.message_id)
        time.sleep(delay)
        body = text.encode()
    return str(json.loads(result.text)["status"])


REQUEUED: dict[str, tuple[str, int]] = {}
"""Deferred copies by original message id: the input queue of `Stack.pipeline`."""


def requeue(text: str, delay: int) -> None:
    REQUEUED[json.loads(text)[ENVELOPE_KEY]["messageId"]] = (text, delay)


def test_a_thousand_messages_cost_one_token_request_and_one_connection(stack):
    pipeline = stack.pipeline()
    statuses = [handle(pipeline, body) for body in bodies(1000)]
    assert statuses == ["succeeded"] * 1000
    assert stack.identity.token_requests == 1
    assert stack.graph.connections == 1
    assert stack.graph.stats()["requests"] == 1000


def test_concurrent_invocations_share_one_token_and_at_most_concurrency_connections(stack):
    pipeline = stack.pipeline()
    concurrency = queue_options().max_concurrency  # what host.json lets one process run at once
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        statuses = list(pool.map(lambda body: handle(pipeline, body), bodies(20 * concurrency)))
    assert set(statuses) == {"succeeded"}
    assert stack.identity.token_requests == 1  # concurrent cold-start invocations wait for one fetch
    assert 1 <= stack.graph.connections <= concurrency


def test_a_retry_after_holds_every_invocation_so_none_retries_early(stack):
    limit, window_s = 10, 1.0
    stack.graph.configure(write_limit=limit, write_window_s=window_s, script=[{"status": 429, "retryAfter": "1"}])
    pipeline = stack.pipeline(budget=limit - 1, window_s=window_s)
    with ThreadPoolExecutor(max_workers=queue_options().max_concurrency) as pool:
        statuses = list(pool.map(lambda body: handle(pipeline, body), bodies(30)))
    stats = stack.graph.stats()
    assert set(statuses) == {"succeeded"}
    assert stats["byStatus"].get("429", 0) >= 1  # the scripted one, at least
    assert stats["earlyRetries"] == 0
    assert stats["peakWindowWrites"] <= limit
