"""PATCH one managedDeviceCertificateState through Graph, within one invocation's budget.

One `GraphClient` per process: it shares the HTTP session (connection reuse) and the circuit
breaker across every concurrent invocation; each PATCH goes with its tenant's credential (one
token per tenant per lifetime) and `Pacer` (the tenant's write budget and Retry-After gate, shared by
every instance through the pacing table).
A tenant with no write slot within a short wait defers the message instead of holding an
invocation slot (docs/tenants.md).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import requests

from shared.contract.echo import bounded, shown
from shared.contract.errors import (
    DeferralReason,
    DeferralRequested,
    ErrorCode,
    GraphRefused,
    GraphTrace,
    TransientError,
)
from shared.graph.breaker import CLOSED, CircuitBreaker, Permit
from shared.graph.retry_policy import SUCCESS_STATUSES, Action, Decision, decide, retry_after_ceiling
from shared.graph.routes import GraphRequest
from shared.graph.tenancy import Tenant
from shared.graph.transport import Answer, patch_within
from shared.logs import log_event
from shared.telemetry import Telemetry

logger = logging.getLogger("certstate.graph")

_RETURN_EARLY_SECONDS = 0.5
"""How long before its booked slot a deferred message is due back. Visibility is in whole seconds, so a
copy comes back within half a second either side of its turn: a second early would keep each copy in an
invocation for half a second on average, and the host fetches no batch while more than
`newBatchThreshold` invocations run (docs/design.md, "Pacing across instances")."""
_FORCE_REFRESH_CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"%d"}}}'
MAX_ANSWER_BYTES: Final = 1024 * 1024
"""Graph answers this PATCH with the object (a few KiB, at most ~64 KiB of echoed strings) or an error."""
_ID_CHARS: Final = 200
_TEXT_CHARS: Final = 1000


@dataclass(frozen=True)
class GraphResult:
    """A successful PATCH; `warnings` name what the client did differently from what Graph asked."""

    status: int
    trace: GraphTrace
    attempts: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientLimits:
    """How hard one invocation tries before handing the message back to the queue.

    `read_timeout` bounds the whole answer (status line, headers and body), not each socket read.
    """

    connect_timeout: float
    read_timeout: float
    max_attempts: int
    max_wait_seconds: float
    slot_wait_seconds: float | None
    """Longest wait for the tenant's next write slot; past it the message is deferred. None (a deployment
    serving one tenant): wait up to `max_wait_seconds`, with no cap on waiters, as no other tenant's
    message needs the invocation slot, and a deferred copy may come back to another instance, whose slot
    it would leave unused here."""
    long_waits: int | None = None
    """How many deferred copies of the process may wait past `slot_wait_seconds` for their slot at once
    (None: no cap; 0: none). The host fetches no batch while more than `newBatchThreshold` invocations run, so
    copies waiting whole intervals must leave room for the ones due behind them to be read."""
    max_answer_bytes: int = MAX_ANSWER_BYTES

    @property
    def return_early_seconds(self) -> float:
        """How early a deferred copy comes back, to wait out the rest of its slot here."""
        wait = self.slot_wait_seconds
        return _RETURN_EARLY_SECONDS if wait is None else min(_RETURN_EARLY_SECONDS, wait)


@dataclass
class _Held:
    """The breaker's permit one PATCH holds: the probe's, or the one of a closed breaker."""

    permit: Permit = CLOSED


class GraphClient:
    """Sends PATCHes with the retry policy of docs/contract.md section 5."""

    def __init__(
        self,
        *,
        session: requests.Session,
        scope: str,
        breaker: CircuitBreaker,
        limits: ClientLimits,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._session = session  # built by wiring.build_session, which reads the environment once
        self._retry_after_cap = retry_after_ceiling(limits.max_wait_seconds)
        self._scope = scope
        self._breaker = breaker
        self._limits = limits
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._telemetry = telemetry or Telemetry()
        self._refused_tenants: set[str | None] = set()  # whose cached token Graph answered 401
        self._refused_lock = threading.Lock()
        self._long_waits = None if limits.long_waits is None else threading.BoundedSemaphore(limits.long_waits)

    def patch(self, request: GraphRequest, tenant: Tenant, booked: float | None = None) -> GraphResult:
        """PATCH until success, a permanent refusal, a deferral, or the invocation's budget runs out.

        `booked`: the slot of the tenant's shared schedule held for this deferred copy (from its record).
        """
        held = _Held()
        try:
            return self._patch(request, tenant, held, booked)
        finally:
            self._breaker.release(held.permit)  # a probe that ended without a verdict lets the next one go

    def _patch(self, request: GraphRequest, tenant: Tenant, held: _Held, booked: float | None) -> GraphResult:
        deadline = self._clock() + self._limits.max_wait_seconds
        claims: str | None = None
        token_refreshed = False
        warnings: dict[str, None] = {}  # ordered, each once
        last: TransientError | None = None
        for attempt in range(1, self._limits.max_attempts + 1):
            self._admit(held, warnings)
            try:
                token = self._token(tenant, claims, attempt, deadline)
            except TransientError:
                self._admit(_Held(), warnings)  # if the failure opened it, this message waits with the rest
                raise
            # The slot last, right before the send: a slot held while waiting for the token lock would go
            # out after a 429 that arrived meanwhile, inside its Retry-After.
            if not self._slot(tenant, deadline, last, warnings, booked):
                break  # this delivery failed (5xx, timeouts) and its wait is up: the host's retry counts it
            booked = None  # a booked slot serves one send
            # Again after the wait for the slot: the breaker may have opened meanwhile, and then only its
            # probe may write.
            self._admit(held, warnings)
            claims = None
            answer, trace = self._send(request, token)
            status = answer.status if answer is not None else None
            self._tell_breaker(status, tenant)
            decision = decide(
                status,
                answer.headers.get("Retry-After") if answer is not None else None,
                attempt=attempt,
                token_refreshed=token_refreshed,
                now=self._wall_clock(),
                rng=self._rng,
                retry_after_cap=self._retry_after_cap,
            )
            # No retry left in this invocation (attempts, or a wait past the deadline): say so, not "retry".
            gives_up = decision.action is Action.RETRY and (
                attempt == self._limits.max_attempts or self._clock() + decision.delay > deadline
            )
            log_event(  # a final answer at DEBUG: the `outcome` line says it once (status, requestId, attempts)
                logger,
                logging.DEBUG if decision.action is Action.DONE else logging.WARNING,
                "graphResponse",
                attempt=attempt,
                httpStatus=status,
                requestId=trace.request_id,
                clientRequestId=trace.client_request_id,
                diagnostic=trace.diagnostic,
                action="giveUp" if gives_up else decision.action.value,
                delaySeconds=None if gives_up else round(decision.delay, 3) or None,
            )
            if decision.capped_from is not None:
                warnings[self._capped(decision, status, trace)] = None
            if decision.action is Action.DONE:
                assert status is not None
                return GraphResult(status=status, trace=trace, attempts=attempt, warnings=tuple(warnings))
            assert decision.code is not None
            odata_code, odata_message = _odata_error(answer)
            if decision.action is Action.REFRESH_TOKEN:
                token_refreshed = True
                claims = _claims_challenge(answer) or self._force_refresh()
                continue
            if decision.action is Action.FAIL:
                raise GraphRefused(
                    code=decision.code,
                    message=_refusal_message(status, odata_message),
                    graph_code=odata_code,
                    http_status=status,
                    trace=trace,
                    attempts=attempt,
                    warnings=tuple(warnings),
                )
            last = TransientError(
                code=decision.code,
                message=odata_message or (f"Graph answered {status}" if status else "no answer from Graph"),
                graph_code=odata_code,
                http_status=status,
                trace=trace,
                attempts=attempt,
                warnings=tuple(warnings),
            )
            if decision.gate:
                tenant.pacer.hold(decision.delay)
            elif attempt < self._limits.max_attempts:
                if self._clock() + decision.delay > deadline:
                    break
                self._telemetry.waited("backoff", decision.delay)
                self._sleep(decision.delay)
        # No `last` only when the last attempt was spent on a 401, asking for a fresh token.
        raise self._out_of_attempts(last, tenant, warnings)

    def _out_of_attempts(
        self, last: TransientError | None, tenant: Tenant, warnings: dict[str, None]
    ) -> TransientError | DeferralRequested:
        """Still throttled after every attempt: wait, spending nothing; any other failure spends the delivery."""
        if last is not None and last.code is ErrorCode.GRAPH_THROTTLED and last.http_status == 429:
            return self._throttled(tenant, warnings)
        return last or TransientError(code=ErrorCode.GRAPH_UNAUTHORIZED, message="no attempt left after a 401")

    def _admit(self, held: _Held, warnings: dict[str, None]) -> None:
        """Ask the breaker (with the permit this call holds); a deferral carries the warnings gathered so far."""
        try:
            held.permit = self._breaker.admit(held.permit)
        except DeferralRequested as deferral:
            raise DeferralRequested(deferral.delay_seconds, deferral.reason, deferral.cause, tuple(warnings)) from None

    def _tell_breaker(self, status: int | None, tenant: Tenant) -> None:
        """An outage's answer counts as a failure; any other answer closes the breaker, except a 401.

        A 401 is no proof that Graph and the token path are well: the refresh that follows decides (a
        failed one counts towards the breaker), and the tenant's later calls refresh before they send.
        """
        if status is None or status >= 500:
            self._breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)
        elif status == 401:
            self._refused(tenant, refused=True)
        else:
            self._breaker.succeeded()

    def _was_refused(self, tenant: Tenant) -> bool:
        with self._refused_lock:
            return tenant.tenant_id in self._refused_tenants

    def _refused(self, tenant: Tenant, *, refused: bool) -> None:
        """Remember (or forget) that Graph refused the token this tenant's credential holds."""
        with self._refused_lock:
            if refused:
                self._refused_tenants.add(tenant.tenant_id)
            else:
                self._refused_tenants.discard(tenant.tenant_id)

    def _slot(
        self,
        tenant: Tenant,
        deadline: float,
        last: TransientError | None,
        warnings: dict[str, None],
        booked: float | None = None,
    ) -> bool:
        """Take the tenant's next write slot if it comes within the short wait, else defer the message.

        Deferring keeps this invocation slot free for other tenants' messages, and spends no delivery:
        the tenant's pacing or its Retry-After is why. False: a delivery whose own attempts failed
        (5xx, timeouts) ran out of its wait, which the host's retry counts as before.
        """
        wait = self._limits.slot_wait_seconds
        short = deadline if wait is None else min(deadline, self._clock() + wait)
        if booked is not None and self._use_booked(tenant, booked, short, deadline):
            return True
        if wait is None:
            acquired = tenant.pacer.acquire(deadline)
        else:
            # Enough waiters to cover the slots of the next second (the jitter of returning copies), no more.
            enough = math.ceil(_RETURN_EARLY_SECONDS / tenant.pacer.interval) + 1
            acquired = tenant.pacer.acquire(short, enough)
        if acquired:
            return True
        if last is not None and last.code is not ErrorCode.GRAPH_THROTTLED:
            return False
        raise self._throttled(tenant, warnings)

    def _use_booked(self, tenant: Tenant, booked: float, short: float, deadline: float) -> bool:
        """A copy back at its turn: the next slot within the short wait, or past it while few copies here wait so long.

        Deferring a copy again puts it behind every copy booked since, so it waits for its slot as long as its
        invocation may (bounded to the short wait, the lowest of three tenants fell from 95-98 % to 85 %), but
        only `long_waits` at a time: copies read late come back with their tenant's next ones and wait whole
        intervals, and too many such waits hold the process at its concurrency, so that the copies due behind
        them are read later still (docs/design.md, "Pacing across instances").
        """
        permits = self._long_waits
        if permits is None:
            return tenant.pacer.use_booked(booked, deadline)
        # A slot up to half an interval past its turn (taken meanwhile by a message read in a backlog) is worth
        # waiting for: deferred again, the copy would leave it to the next copy's turn, a longer gap than the wait.
        own = booked + tenant.pacer.interval / 2 - self._wall_clock().timestamp()
        if tenant.pacer.use_booked(booked, max(short, min(deadline, self._clock() + own))):
            return True
        if not permits.acquire(blocking=False):
            return False
        try:
            return tenant.pacer.use_booked(booked, deadline)
        finally:
            permits.release()

    def _throttled(self, tenant: Tenant, warnings: dict[str, None]) -> DeferralRequested:
        """Come back at the tenant's booked slot: throttling is the tenant's state, not the message's fault."""
        delay, retry_after, slot = tenant.pacer.deferral()
        # Back about its booked slot: queue visibility is in whole seconds (rounded up), so it is due half a
        # second early and comes back up to half a second either side; early, it waits out the rest here.
        reason = DeferralReason.RETRY_AFTER if retry_after else DeferralReason.WRITE_BUDGET
        early = self._limits.return_early_seconds
        return DeferralRequested(max(0.0, delay - early), reason, ErrorCode.GRAPH_THROTTLED, tuple(warnings), slot)

    def _capped(self, decision: Decision, status: int | None, trace: GraphTrace) -> str:
        """Log a Retry-After beyond the ceiling (an event for the telemetry) and word it for the outcome."""
        asked = shown(decision.capped_from or "")
        log_event(logger, logging.WARNING, "retryAfterCapped", httpStatus=status, retryAfter=asked,
                  cappedSeconds=decision.delay, requestId=trace.request_id)  # fmt: skip
        self._telemetry.retry_after_capped(status)
        return f"Graph's Retry-After {asked} was capped at {decision.delay:g} s: writes resumed before it ran out"

    def _token(self, tenant: Tenant, claims: str | None, attempt: int, deadline: float) -> str:
        """One token fetch at a time per tenant, so a cold start asks Entra ID (or the identity endpoint) once.

        azure-identity caches the token, but concurrent first calls would each miss that cache. A fetch
        that fails is shared: whoever waited for it fails with its reason instead of asking again, so a
        dead or slow endpoint costs one bounded call (wiring.build_credential) per wave, not per waiter,
        and counts once towards the breaker. Only the home tenant's failures count there: the managed
        identity is every tenant's, while one customer tenant's refusal (no consent) is no outage of all.

        Once Graph answered 401 to the tenant's cached token, every call asks for a fresh one until a
        refresh succeeds: the revoked token would only cost each message a PATCH and a 401.
        """
        gate = tenant.tokens
        failures_seen = gate.failures
        if not gate.lock.acquire(timeout=max(0.0, deadline - self._clock())):
            raise self._no_token(tenant, "another token request did not finish within this invocation's wait", attempt)
        try:
            if gate.failures != failures_seen:
                raise self._no_token(tenant, gate.failure, attempt)
            if claims is None and self._was_refused(tenant):
                claims = self._force_refresh()
            try:
                token = tenant.credential.get_token(self._scope, claims=claims).token
            except Exception as err:  # whatever the credential raises, there is no token
                gate.failures += 1
                gate.failure = f"{type(err).__name__}: {_first_line(str(err))}"
                log_event(logger, logging.WARNING, "credentialFailed", tenantId=tenant.tenant_id, reason=gate.failure)
                if tenant.tenant_id is None:
                    self._breaker.failed(ErrorCode.CREDENTIAL_UNAVAILABLE)  # once per call, not per waiter
                raise self._no_token(tenant, gate.failure, attempt) from None
            if claims is not None:
                self._refused(tenant, refused=False)
            return token
        finally:
            gate.lock.release()

    def _force_refresh(self) -> str:
        """Claims that make the credential skip its cache (the token it holds was refused)."""
        return _FORCE_REFRESH_CLAIMS % self._wall_clock().timestamp()

    def _no_token(self, tenant: Tenant, reason: str, attempt: int) -> TransientError:
        where = f" in tenant {tenant.tenant_id}" if tenant.tenant_id else ""
        return TransientError(
            code=ErrorCode.CREDENTIAL_UNAVAILABLE,
            message=f"no token for {self._scope}{where}: {reason}",
            attempts=attempt - 1,
        )

    def _send(self, request: GraphRequest, token: str) -> tuple[Answer | None, GraphTrace]:
        client_request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # the answer is small; nothing to inflate, no decompression bomb
            "client-request-id": client_request_id,
            **request.headers,
        }
        limits = self._limits
        sent = self._clock()
        try:
            answer = patch_within(
                self._session,
                request.url,
                body=request.body,
                headers=headers,
                connect_timeout=limits.connect_timeout,
                total_timeout=limits.connect_timeout + limits.read_timeout,
                max_body_bytes=limits.max_answer_bytes,
            )
        except requests.RequestException as err:
            self._telemetry.graph_response(None, self._clock() - sent)
            log_event(logger, logging.WARNING, "graphUnreachable", reason=type(err).__name__)
            return None, GraphTrace(client_request_id=client_request_id)
        self._telemetry.graph_response(answer.status, self._clock() - sent)
        trace = _trace(answer.headers, client_request_id)
        if answer.cut is not None:
            log_event(logger, logging.WARNING, "graphAnswerCut", reason=answer.cut, httpStatus=answer.status,
                      bytesRead=len(answer.body), requestId=trace.request_id)  # fmt: skip
        return answer, trace


def _trace(headers: Mapping[str, str], client_request_id: str) -> GraphTrace:
    """Graph's ids, bounded: they reach the outcome, and a header may be as long as a line can be."""

    def header(name: str, default: str | None = None) -> str | None:
        value = headers.get(name, default)
        return None if value is None else bounded(value, _ID_CHARS)

    return GraphTrace(
        request_id=header("request-id"),
        client_request_id=header("client-request-id", client_request_id),
        date=header("Date"),
        diagnostic=header("x-ms-ags-diagnostic"),
    )


def _refusal_message(status: int | None, odata_message: str | None) -> str:
    """Graph's own message for a refusal; for an answer that is not an error, what it means for the update."""
    if status is not None and 200 <= status < 300 and status not in SUCCESS_STATUSES:
        return (
            f"Graph answered {status}, not 200 or 204 as documented for this PATCH: the update may or may not "
            "be applied; check the state before replaying"
        )
    if status is not None and 300 <= status < 400:  # whatever its body says, the status is the news
        return f"Graph answered {status}, a redirect, which is not followed"
    return odata_message or f"Graph answered {status}"


def _odata_error(answer: Answer | None) -> tuple[str | None, str | None]:
    """The most specific OData error code (walking innerError) and the top-level message, bounded."""
    if answer is None or not answer.body:
        return None, None
    try:
        error = json.loads(answer.body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return None, None
    if not isinstance(error, dict):
        return None, None
    code: str | None = None
    node: Any = error
    while isinstance(node, dict):
        candidate = node.get("code")
        if isinstance(candidate, str) and candidate and not candidate.isdigit():
            code = bounded(candidate, _ID_CHARS)
        node = node.get("innerError", node.get("innererror"))
    message = error.get("message")
    return code, bounded(message, _TEXT_CHARS) if isinstance(message, str) else None


def _claims_challenge(answer: Answer | None) -> str | None:
    """The decoded `claims` of a CAE challenge in WWW-Authenticate, if Graph sent one."""
    header = answer.headers.get("WWW-Authenticate", "") if answer is not None else ""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "claims":
            encoded = value.strip().strip('"')
            try:
                decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
                json.loads(decoded)
            except ValueError:
                return None
            return decoded
    return None


def _first_line(text: str | None) -> str:
    return (text or "credential failed").strip().splitlines()[0][:300]
