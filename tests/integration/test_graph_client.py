"""The Graph client over real loopback HTTP against the Graph simulator, with the real credential."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, TokenCredential

from devstack.graph_simulator import GraphSimulator
from devstack.identity_emulator import IdentityEmulator
from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode, GraphRefused, TransientError
from shared.graph import transport
from shared.graph.breaker import CircuitBreaker
from shared.graph.budget import SharedPacer
from shared.graph.client import MAX_ANSWER_BYTES, ClientLimits, GraphClient, GraphResult
from shared.graph.pacing import Pacer, WritePacer
from shared.graph.routes import GraphRequest
from shared.graph.tenancy import Tenant
from shared.settings import Settings
from shared.wiring import build_credential, build_session
from tests.support.budget import MemoryStore

IOS = "/deviceManagement/deviceConfigurations/b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11/microsoft.graph.iosScepCertificateProfile/managedDeviceCertificateStates/d99bc884-c884-d99b-84c8-9bd984c89bd9"  # noqa: E501
BODY = {"certificateIssuer": "CN=Contoso", "certificateExpirationDateTime": "2027-01-01T00:02:14.9489247-08:00"}


@dataclass
class TenantClient:
    """A GraphClient with the one tenant every PATCH of the test goes to."""

    client: GraphClient
    tenant: Tenant

    def patch(self, request: GraphRequest) -> GraphResult:
        return self.client.patch(request, self.tenant)


def client(
    graph: GraphSimulator,
    credential: TokenCredential,
    *,
    max_attempts: int = 4,
    max_wait: float = 10.0,
    slot_wait: float | None = 10.0,
    pacer: Pacer | None = None,
    breaker: CircuitBreaker | None = None,
    read_timeout: float = 5,
    clock: FakeClock | None = None,
    long_waits: int | None = None,
) -> TenantClient:
    limits = ClientLimits(connect_timeout=1, read_timeout=read_timeout, max_attempts=max_attempts,
                          max_wait_seconds=max_wait, slot_wait_seconds=slot_wait, long_waits=long_waits)  # fmt: skip
    timing: dict[str, Any] = {"clock": clock.now, "sleep": clock.sleep} if clock else {}
    graph_client = GraphClient(
        session=build_session(4, graph.base_url),  # the deployed session: its answers are bounded as a whole
        scope=f"{graph.origin}/.default",
        breaker=breaker or closed_breaker(),
        limits=limits,
        **timing,
    )
    return TenantClient(graph_client, Tenant(None, credential, pacer or WritePacer(1000, 1.0, **timing)))


def closed_breaker() -> CircuitBreaker:
    """A breaker that never opens in these tests (the breaker has tests of its own)."""
    return CircuitBreaker(threshold=1000, cooldown_seconds=1, max_cooldown_seconds=1, probe_timeout_seconds=10)


class FakeClock:
    """Monotonic time that only moves when slept, for waits of minutes in no time."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def patch(graph: GraphSimulator, c: TenantClient, path: str = IOS, body: dict[str, object] | None = None):
    return c.patch(GraphRequest(url=graph.base_url + path, body=body or BODY))


def writes(graph: GraphSimulator) -> list[dict[str, Any]]:
    return [r for r in graph.requests() if r["method"] == "PATCH"]


def test_a_patch_lands_with_graphs_ids_captured(graph, credential):
    result = patch(graph, client(graph, credential))
    assert (result.status, result.attempts) == (200, 1)
    logged = writes(graph)
    assert result.trace.request_id
    assert result.trace.date
    assert result.trace.client_request_id == logged[0]["clientRequestId"]
    state = graph.store()
    assert BODY["certificateExpirationDateTime"] in str(state)


def test_each_request_carries_a_fresh_client_request_id(graph, credential):
    c = client(graph, credential)
    patch(graph, c)
    patch(graph, c)
    ids = [r["clientRequestId"] for r in writes(graph)]
    assert len(set(ids)) == 2


@pytest.mark.parametrize("form", ["fractional", "seconds", "http-date"])
def test_a_429_is_retried_no_earlier_than_its_retry_after(graph, credential, form: str):
    not_before = time.time() + 2
    retry_after = {
        "fractional": "1.5",
        "seconds": "1",
        "http-date": format_datetime(datetime.fromtimestamp(not_before, UTC), usegmt=True),
    }[form]
    graph.configure(script=[{"status": 429, "retryAfter": retry_after}])
    result = patch(graph, client(graph, credential))
    first, second = writes(graph)
    assert (first["status"], second["status"], result.status, result.attempts) == (429, 200, 200, 2)
    assert graph.stats()["earlyRetries"] == 0
    if form == "http-date":
        assert second["wallTime"] >= int(not_before)  # the date has whole-second precision
    else:
        assert second["wallTime"] - first["wallTime"] >= float(retry_after)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_backoff(graph, credential, status: int):
    graph.configure(script=[{"status": status}, {"status": status}])
    result = patch(graph, client(graph, credential))
    assert (result.status, result.attempts) == (200, 3)
    times = [r["wallTime"] for r in writes(graph)]
    assert times[1] - times[0] >= 0.5  # backoff(1) is at least half a second
    assert times[2] - times[1] >= 1.0  # backoff(2) at least one


def test_a_dropped_connection_is_retried(graph, credential):
    graph.configure(script=[{"drop": True}])
    result = patch(graph, client(graph, credential))
    assert (result.status, result.attempts) == (200, 2)
    assert graph.stats()["dropped"] == 1


@pytest.mark.parametrize(
    ("path", "body", "code", "status"),
    [
        (IOS.replace("d99bc884", "0000c884"), BODY, ErrorCode.GRAPH_NOT_FOUND, 404),
        (IOS, {"certificateKeyLength": None}, ErrorCode.GRAPH_BAD_REQUEST, 400),
    ],
)
def test_permanent_refusals_fail_after_one_call(graph, credential, path, body, code, status):
    with pytest.raises(GraphRefused) as caught:
        patch(graph, client(graph, credential), path, body)
    assert (caught.value.code, caught.value.http_status, caught.value.attempts) == (code, status, 1)
    assert caught.value.graph_code in {"ResourceNotFound", "BadRequest"}
    assert caught.value.trace.request_id
    assert len(writes(graph)) == 1


def test_403_is_permanent(graph, credential):
    graph.configure(script=[{"status": 403}])
    with pytest.raises(GraphRefused) as caught:
        patch(graph, client(graph, credential))
    assert caught.value.code is ErrorCode.GRAPH_FORBIDDEN
    assert len(writes(graph)) == 1


def test_a_401_gets_one_retry_with_a_fresh_token(graph, identity: IdentityEmulator, credential):
    c = client(graph, credential)
    patch(graph, c)
    assert identity.tokens_issued == 1
    graph.revoke_all_tokens()
    time.sleep(0.01)
    result = patch(graph, c)
    assert (result.status, result.attempts) == (200, 2)
    assert identity.tokens_issued == 2


def test_a_second_401_is_permanent(graph, credential):
    graph.configure(script=[{"status": 401}, {"status": 401}])
    with pytest.raises(GraphRefused) as caught:
        patch(graph, client(graph, credential))
    assert caught.value.code is ErrorCode.GRAPH_UNAUTHORIZED
    assert len(writes(graph)) == 2


def test_one_token_serves_many_requests(graph, identity: IdentityEmulator, credential):
    c = client(graph, credential)
    for _ in range(5):
        patch(graph, c)
    assert identity.tokens_issued == 1


def test_a_retry_after_beyond_the_wait_limit_defers_the_message_until_it_ends(graph, credential):
    graph.configure(script=[{"status": 429, "retryAfter": "30"}])
    started = time.monotonic()
    with pytest.raises(DeferralRequested) as caught:
        patch(graph, client(graph, credential, max_wait=5, slot_wait=2))
    assert (caught.value.reason, caught.value.cause) == (DeferralReason.RETRY_AFTER, ErrorCode.GRAPH_THROTTLED)
    assert 28 < caught.value.delay_seconds <= 30  # back when the Retry-After ends, not a delivery spent
    assert time.monotonic() - started < 2
    assert len(writes(graph)) == 1


def test_consecutive_outage_failures_open_the_breaker_and_hold_every_request(graph, credential):
    graph.configure(error_rate=1.0, error_statuses=[502])
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=30, max_cooldown_seconds=60, probe_timeout_seconds=10)
    c = client(graph, credential, max_attempts=5, max_wait=10, breaker=breaker)
    with pytest.raises(DeferralRequested) as caught:
        patch(graph, c)  # attempts 1-3 fail, the fourth is held back
    assert (caught.value.reason, caught.value.cause) == (DeferralReason.BREAKER_OPEN, ErrorCode.GRAPH_UNAVAILABLE)
    assert len(writes(graph)) == 3
    with pytest.raises(DeferralRequested):
        patch(graph, client(graph, credential, breaker=breaker))  # another invocation of the process
    assert len(writes(graph)) == 3  # nothing more went out


@pytest.mark.parametrize("slot_wait", [None, 0.5])
def test_serving_one_tenant_a_backlog_waits_for_its_slots_instead_of_leaving_them(graph, credential, slot_wait):
    c = client(graph, credential, slot_wait=slot_wait, pacer=WritePacer(4, 1.0))  # a slot every 0.25 s

    def one(_: int) -> str:
        try:
            patch(graph, c)
        except DeferralRequested:
            return "deferred"
        return "written"

    with ThreadPoolExecutor(max_workers=12) as pool:  # the host's 12 invocations at once
        results = Counter(pool.map(one, range(12)))
    assert len(writes(graph)) == results["written"]
    if slot_wait is None:  # one tenant: nobody else needs the invocation slots, so all twelve wait (~3 s)
        assert results == {"written": 12}
    else:  # several tenants: a short wait, a few waiters, and the rest deferred to booked slots
        assert results["deferred"] >= 6


def test_no_write_slot_within_the_short_wait_defers_without_sending(graph, credential):
    c = client(graph, credential, slot_wait=0.5, pacer=WritePacer(1, 10.0))
    patch(graph, c)
    deferred = []
    for _ in range(3):
        with pytest.raises(DeferralRequested) as caught:
            patch(graph, c)
        assert caught.value.reason == DeferralReason.WRITE_BUDGET
        deferred.append(caught.value.delay_seconds)
    assert len(writes(graph)) == 1
    assert 9 < deferred[0] <= 10  # the tenant's next slot ...
    assert deferred[1] == pytest.approx(deferred[0] + 10, abs=0.2)  # ... and the ones after it, one each
    assert deferred[2] == pytest.approx(deferred[0] + 20, abs=0.2)


def copy_back(graph: GraphSimulator, c: TenantClient, turn: float) -> str:
    """A deferred copy's PATCH at its booked turn: written, or deferred again."""
    try:
        c.client.patch(GraphRequest(url=graph.base_url + IOS, body=BODY), c.tenant, booked=turn)
    except DeferralRequested:
        return "deferred"
    return "written"


@pytest.mark.parametrize("long_waits", [1, None])
def test_copies_back_at_once_wait_past_the_short_wait_only_a_few_at_a_time(graph, credential, long_waits):
    pacer = SharedPacer("tenant", MemoryStore(), 10, 10.0, instance="here", fallback_budget=10)  # a slot a second
    c = client(graph, credential, slot_wait=0.5, pacer=pacer, long_waits=long_waits)
    turn = time.time() - 5  # three copies read late together, all past their turn
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = Counter(pool.map(lambda _: copy_back(graph, c, turn), range(3)))
    if long_waits is None:  # no cap: each waits its turn, the third two seconds, each holding an invocation
        assert results == {"written": 3}
    else:  # one now, one waiting a second past the short wait, the third deferred again, not held
        assert results == {"written": 2, "deferred": 1}
    assert len(writes(graph)) == results["written"]


def test_a_copy_whose_slot_a_backlog_took_waits_for_the_next_within_half_an_interval(graph, credential):
    pacer = SharedPacer("tenant", MemoryStore(), 5, 10.0, instance="here", fallback_budget=5)  # a slot every 2 s
    c = client(graph, credential, slot_wait=0.2, pacer=pacer, long_waits=0)  # no copy may wait long
    patch(graph, c)  # a message read in the backlog takes the slot
    time.sleep(1.5)
    assert copy_back(graph, c, time.time()) == "written"  # its slot 0.5 s out, within half an interval of its turn
    assert copy_back(graph, c, time.time()) == "deferred"  # 2 s out: deferred again, the next copy's turn is as near
    assert len(writes(graph)) == 2


@pytest.mark.parametrize("shared_pacer", [True, False], ids=["one-process", "no-shared-gate"])
def test_a_429_holds_back_every_request_of_the_process(graph, credential, shared_pacer: bool):
    pacers = [WritePacer(1000, 1.0)] * 2 if shared_pacer else [WritePacer(1000, 1.0), WritePacer(1000, 1.0)]
    first, second = (client(graph, credential, pacer=p) for p in pacers)
    graph.configure(script=[{"status": 429, "retryAfter": "1.5"}])
    throttled = threading.Thread(target=patch, args=(graph, first))  # 429, waits, then 200
    throttled.start()
    deadline = time.monotonic() + 5
    while pacers[0]._gate_until - time.monotonic() < 1.0 and time.monotonic() < deadline:  # it read its 429
        time.sleep(0.01)
    patch(graph, second)  # another invocation, while the Retry-After is in force
    throttled.join()
    refused = writes(graph)[0]
    assert refused["status"] == 429
    if shared_pacer:
        assert graph.stats()["earlyRetries"] == 0
        assert all(w["wallTime"] - refused["wallTime"] >= 1.5 for w in writes(graph)[1:])
    else:  # the control: without the process-wide gate the other invocation goes out too early
        assert graph.stats()["earlyRetries"] >= 1


def test_transient_failures_past_the_attempt_limit_are_reported_as_transient(graph, credential):
    graph.configure(script=[{"status": 503, "retryAfter": "0.1"}] * 3)
    with pytest.raises(TransientError) as caught:
        patch(graph, client(graph, credential, max_attempts=3))
    assert (caught.value.code, caught.value.attempts, caught.value.http_status) == (ErrorCode.GRAPH_UNAVAILABLE, 3, 503)


def test_no_token_is_a_transient_credential_error(graph, identity: IdentityEmulator, credential):
    identity.set_failing(True)
    with pytest.raises(TransientError) as caught:
        patch(graph, client(graph, credential))
    assert caught.value.code is ErrorCode.CREDENTIAL_UNAVAILABLE
    assert writes(graph) == []


def test_members_after_unknown_future_value_reach_graph_with_the_prefer_header(graph, credential):
    c = client(graph, credential)
    body = {"devicePlatform": "windowsMobileApplicationManagement"}
    result = c.patch(
        GraphRequest(url=graph.base_url + IOS, body=body, headers={"Prefer": "include-unknown-enum-members"})
    )
    assert result.status == 200
    with pytest.raises(GraphRefused):  # without the header Graph refuses the member: the header matters
        c.patch(GraphRequest(url=graph.base_url + IOS, body=body))


def _actions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    import json

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "certstate.graph"]
    return [{k: v for k, v in line.items() if k in ("attempt", "action", "delaySeconds")} for line in lines]


def test_the_last_attempt_logs_giving_up_not_a_retry(graph, credential, caplog: pytest.LogCaptureFixture):
    graph.configure(script=[{"status": 503, "retryAfter": "0.1"}] * 3)
    with caplog.at_level("INFO", logger="certstate.graph"), pytest.raises(TransientError):
        patch(graph, client(graph, credential, max_attempts=3))
    assert _actions(caplog) == [
        {"attempt": 1, "action": "retry", "delaySeconds": 0.1},
        {"attempt": 2, "action": "retry", "delaySeconds": 0.1},
        {"attempt": 3, "action": "giveUp"},
    ]


def test_a_wait_past_the_deadline_logs_giving_up(graph, credential, caplog: pytest.LogCaptureFixture):
    graph.configure(script=[{"status": 429, "retryAfter": "30"}])
    with (
        caplog.at_level("INFO", logger="certstate.graph"),
        pytest.raises(DeferralRequested),
    ):  # back after the Retry-After
        patch(graph, client(graph, credential, max_wait=5))
    assert _actions(caplog) == [{"attempt": 1, "action": "giveUp"}]


# ---- issue 11: the whole answer is bounded, only documented statuses succeed, the identity fails fast ----


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.startswith("certstate")]
    return [line for line in lines if line["event"] == name]


@pytest.mark.timeout(60)
def test_a_body_trickling_a_byte_at_a_time_is_cut_at_the_budget(graph, credential, caplog):
    caplog.set_level(logging.INFO)
    graph.configure(script=[{"trickleSeconds": 0.2}])  # ~1.5 KB: five minutes of body
    started = time.monotonic()
    result = patch(graph, client(graph, credential, read_timeout=2))  # connect 1 s + read 2 s: 3 s in all
    assert time.monotonic() - started < 6
    assert result.status == 200  # the status line had come: the update stands
    (cut,) = events(caplog, "graphAnswerCut")
    assert (cut["reason"], cut["httpStatus"]) == ("tooSlow", 200)
    assert patch(graph, client(graph, credential)).status == 200  # the next request is served normally


def test_a_huge_body_is_not_read_past_the_limit(graph, credential, caplog):
    caplog.set_level(logging.INFO)
    graph.configure(script=[{"bodyBytes": 20_000_000}])
    result = patch(graph, client(graph, credential))
    assert result.status == 200
    (cut,) = events(caplog, "graphAnswerCut")
    assert cut["reason"] == "tooLarge"
    assert cut["bytesRead"] <= MAX_ANSWER_BYTES


@pytest.mark.parametrize(
    ("status", "says"),
    [
        *((status, "not 200 or 204") for status in (202, 201, 206)),
        # A redirect (issue 17) is never followed: requests must not even read its body for a next request.
        *((status, "a redirect, which is not followed") for status in (301, 302, 303, 307, 308)),
    ],
)
def test_an_answer_graph_does_not_document_for_this_patch_is_one_call_and_a_permanent_failure(
    graph, credential, status: int, says: str
):
    graph.configure(script=[{"status": status}])
    with pytest.raises(GraphRefused) as caught:
        patch(graph, client(graph, credential))
    assert (caught.value.code, caught.value.http_status, caught.value.attempts) == (
        ErrorCode.GRAPH_REQUEST_FAILED, status, 1,
    )  # fmt: skip
    assert f"Graph answered {status}, {says}" in caught.value.message
    assert [r["status"] for r in graph.requests()] == [status]  # one call; no Location was asked for
    assert patch(graph, client(graph, credential)).status == 200  # and the session still serves


def test_204_is_success(graph, credential):
    graph.configure(script=[{"status": 204}])
    assert patch(graph, client(graph, credential)).status == 204


def test_connections_are_still_reused(graph, credential):
    c = client(graph, credential)
    for _ in range(3):
        patch(graph, c)
    pools = c.client._session.get_adapter(graph.base_url).poolmanager.pools  # type: ignore[attr-defined]
    assert [pools[key].num_connections for key in pools.keys()] == [1]  # noqa: SIM118 - not iterable


class StaticToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)


@pytest.mark.timeout(60)
def test_headers_trickling_in_are_cut_at_the_budget_too():
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(OSError):
            while not stop.wait(0.2):
                connection.sendall(b"X")  # one header byte at a time, never a line end
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}/beta"
    limits = ClientLimits(connect_timeout=1, read_timeout=1, max_attempts=1, max_wait_seconds=1, slot_wait_seconds=1)
    c = GraphClient(session=build_session(1, base), scope="s", breaker=closed_breaker(), limits=limits)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        c.patch(GraphRequest(url=base + IOS, body=BODY), Tenant(None, StaticToken(), WritePacer(1000, 1.0)))
    stop.set()
    listener.close()
    assert time.monotonic() - started < 5
    assert (caught.value.code, caught.value.http_status) == (ErrorCode.GRAPH_UNAVAILABLE, None)


@pytest.mark.parametrize("retry_after", ["3600", "99999999999999999999"])
def test_a_retry_after_beyond_the_ceiling_holds_the_process_for_the_ceiling_only(
    graph, credential, caplog, retry_after: str
):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    pacer = WritePacer(1000, 1.0, clock=clock.now, sleep=clock.sleep)
    graph.configure(script=[{"status": 429, "retryAfter": retry_after}])
    started = clock.now()
    with pytest.raises(DeferralRequested) as caught:  # 10 s of budget: the message comes back when the gate opens
        patch(graph, client(graph, credential, max_wait=10, pacer=pacer, clock=clock))
    assert caught.value.reason == DeferralReason.RETRY_AFTER
    assert caught.value.delay_seconds == pytest.approx(29.5)  # due back half a second early, to wait out the rest
    assert caught.value.warnings == (  # carried by the deferred copy to its outcome
        f"Graph's Retry-After '{retry_after}' was capped at 30 s: writes resumed before it ran out",
    )
    assert pacer.acquire(started + 31)  # every other write of the process waited 30 s, not an hour
    assert clock.now() - started == pytest.approx(30)
    (capped,) = events(caplog, "retryAfterCapped")
    assert (capped["retryAfter"], capped["cappedSeconds"], capped["httpStatus"]) == (f"'{retry_after}'", 30, 429)


def test_an_identity_endpoint_that_is_gone_is_a_credential_failure_without_a_traceback(graph, identity, caplog):
    credential = build_credential(Settings())
    identity.stop()
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        patch(graph, client(graph, credential))
    assert time.monotonic() - started < 2  # a refused connection is not retried for seconds
    assert caught.value.code is ErrorCode.CREDENTIAL_UNAVAILABLE
    assert "ServiceRequestError" in caught.value.message
    assert events(caplog, "credentialFailed")
    assert not [r for r in caplog.records if r.name.startswith("certstate") and r.exc_info]
    assert writes(graph) == []


@pytest.mark.timeout(60)
def test_a_stalled_identity_endpoint_costs_one_bounded_call_for_every_waiter(graph, identity):
    credential = build_credential(Settings())
    identity.set_latency(30)
    c = client(graph, credential)
    failures: list[TransientError] = []

    def one() -> None:
        try:
            patch(graph, c)
        except TransientError as err:
            failures.append(err)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert elapsed < 9  # the read timeout (5 s) once, not 300 s, not once per waiter
    assert [f.code for f in failures] == [ErrorCode.CREDENTIAL_UNAVAILABLE] * 3
    assert identity.token_requests == 1  # the waiters shared the failed call's verdict
    assert len({f.message for f in failures}) == 1


def test_the_prepared_patch_is_what_requests_would_send_from_json(graph):
    session = build_session(4, graph.base_url)
    url, headers = graph.base_url + IOS, {"Authorization": "Bearer t0k3n", "client-request-id": "crid-1",
                                          "Prefer": "include-unknown-enum-members"}  # fmt: skip
    ours = transport.prepare(session, url, BODY, headers)
    theirs = session.prepare_request(requests.Request("PATCH", url, json=BODY, headers=headers))
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert dict(ours.headers) == dict(theirs.headers)


# ---- issue 17: writes after the breaker opened, a revoked token while the identity is down ----


class BreakerClock:
    """The breaker's own time, moved by the test: the cool-down passes when the test says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def outcomes(c: TenantClient, graph: GraphSimulator, n: int) -> Counter[str]:
    """Send `n` PATCHes at once (the host's concurrent invocations); what each ended with."""

    def one(_: int) -> str:
        try:
            patch(graph, c)
        except (DeferralRequested, TransientError) as err:
            return type(err).__name__
        return "written"

    with ThreadPoolExecutor(max_workers=n) as pool:
        return Counter(pool.map(one, range(n)))


def test_after_the_breaker_opens_no_write_leaves_but_its_probe(graph, credential):
    graph.configure(error_rate=1.0, error_statuses=[502])
    clock = BreakerClock()
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=30, max_cooldown_seconds=60, probe_timeout_seconds=10,
                             clock=clock)  # fmt: skip
    # A slot every 0.5 s: six invocations pass the breaker at once, then wait for their slots in turn.
    c = client(graph, credential, max_attempts=1, slot_wait=None, pacer=WritePacer(2, 1.0), breaker=breaker)
    assert outcomes(c, graph, 6) == {"TransientError": 3, "DeferralRequested": 3}
    assert len(writes(graph)) == 3  # the three that opened it; those waiting for a slot did not send after
    clock.t += 30  # the cool-down is over: one of the next invocations probes, and its PATCH goes out
    assert outcomes(c, graph, 3) == {"TransientError": 1, "DeferralRequested": 2}
    assert len(writes(graph)) == 4


@pytest.mark.timeout(60)
def test_a_revoked_token_whose_refresh_fails_opens_the_breaker_and_is_not_sent_again(graph, identity, credential):
    clock = BreakerClock()
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=30, max_cooldown_seconds=60, probe_timeout_seconds=10,
                             clock=clock)  # fmt: skip
    c = client(graph, credential, breaker=breaker)
    patch(graph, c)  # a token is cached
    graph.revoke_all_tokens()
    identity.set_failing(True)
    ended: list[str] = []
    for _ in range(5):
        try:
            patch(graph, c)
        except (DeferralRequested, TransientError) as err:
            ended.append(type(err).__name__)
    # Each failed refresh counts (a 401 resets nothing): the third opens the breaker, and the rest wait.
    assert ended == ["TransientError", "TransientError", "DeferralRequested", "DeferralRequested", "DeferralRequested"]
    assert [w["status"] for w in writes(graph)] == [200, 401]  # the revoked token went out once, not per message
    identity.set_failing(False)
    time.sleep(5.5)  # MSAL answers a request the endpoint failed from its own cache for 5 s
    clock.t += 30
    assert patch(graph, c).status == 200  # the probe asks for a fresh token first, and it is accepted
    assert [w["status"] for w in writes(graph)] == [200, 401, 200]
    assert identity.tokens_issued == 2
