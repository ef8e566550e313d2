"""PATCH one managedDeviceCertificateState through Graph, within one invocation's budget.

One `GraphClient` per process: it shares the HTTP session (connection reuse), the
credential (one token per lifetime) and the `WritePacer` (the write budget and the
Retry-After gate) across every concurrent invocation.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from shared.contract.errors import Deferred, ErrorCode, GraphRefused, GraphTrace, TransientError
from shared.graph.breaker import CircuitBreaker
from shared.graph.pacing import WritePacer
from shared.graph.retry_policy import Action, decide
from shared.graph.routes import GraphRequest
from shared.logs import log_event

logger = logging.getLogger("certstate.graph")

WRITE_BUDGET = "writeBudget"
"""Deferral reason: the process's write budget (or a Retry-After) has no slot soon."""
_FORCE_REFRESH_CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"%d"}}}'


@dataclass(frozen=True)
class GraphResult:
    """A successful PATCH."""

    status: int
    trace: GraphTrace
    attempts: int


@dataclass(frozen=True)
class ClientLimits:
    """How hard one invocation tries before handing the message back to the queue."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int
    max_wait_seconds: float


class GraphClient:
    """Sends PATCHes with the retry policy of docs/contract.md section 5."""

    def __init__(
        self,
        *,
        session: requests.Session,
        credential: TokenCredential,
        scope: str,
        pacer: WritePacer,
        breaker: CircuitBreaker,
        limits: ClientLimits,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session  # built by wiring.build_session, which reads the environment once
        self._credential = credential
        self._token_lock = threading.Lock()
        self._scope = scope
        self._pacer = pacer
        self._breaker = breaker
        self._limits = limits
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def patch(self, request: GraphRequest) -> GraphResult:
        """PATCH until success, a permanent refusal, or the invocation's budget runs out."""
        deadline = self._clock() + self._limits.max_wait_seconds
        claims: str | None = None
        token_refreshed = False
        last: TransientError | None = None
        for attempt in range(1, self._limits.max_attempts + 1):
            self._breaker.admit()
            if not self._pacer.acquire(deadline):
                # No write slot within this invocation's wait: come back when there is one, without
                # spending a delivery (a long Retry-After, or a backlog beyond the budget).
                raise Deferred(self._pacer.wait_seconds(), WRITE_BUDGET, ErrorCode.GRAPH_THROTTLED)
            try:
                token = self._token(claims, attempt)
            except TransientError as err:
                self._breaker.failed(err.code)
                self._breaker.admit()  # if that opened it, this message waits with the rest
                raise
            claims = None
            status, response, trace = self._send(request, token)
            if status is None or status >= 500:
                self._breaker.failed(ErrorCode.GRAPH_UNAVAILABLE)
            else:
                self._breaker.succeeded()
            decision = decide(
                status,
                response.headers.get("Retry-After") if response is not None else None,
                attempt=attempt,
                token_refreshed=token_refreshed,
                now=self._wall_clock(),
                rng=self._rng,
            )
            # No retry left in this invocation (attempts, or a wait past the deadline): say so, not "retry".
            gives_up = decision.action is Action.RETRY and (
                attempt == self._limits.max_attempts or self._clock() + decision.delay > deadline
            )
            log_event(
                logger,
                logging.INFO if decision.action is Action.DONE else logging.WARNING,
                "graphResponse",
                attempt=attempt,
                httpStatus=status,
                requestId=trace.request_id,
                clientRequestId=trace.client_request_id,
                diagnostic=trace.diagnostic,
                action="giveUp" if gives_up else decision.action.value,
                delaySeconds=None if gives_up else round(decision.delay, 3) or None,
            )
            if decision.action is Action.DONE:
                assert status is not None
                return GraphResult(status=status, trace=trace, attempts=attempt)
            assert decision.code is not None
            odata_code, odata_message = _odata_error(response)
            if decision.action is Action.REFRESH_TOKEN:
                token_refreshed = True
                claims = _claims_challenge(response) or _FORCE_REFRESH_CLAIMS % self._wall_clock().timestamp()
                continue
            if decision.action is Action.FAIL:
                raise GraphRefused(
                    code=decision.code,
                    message=odata_message or f"Graph answered {status}",
                    graph_code=odata_code,
                    http_status=status,
                    trace=trace,
                    attempts=attempt,
                )
            last = TransientError(
                code=decision.code,
                message=odata_message or (f"Graph answered {status}" if status else "no answer from Graph"),
                graph_code=odata_code,
                http_status=status,
                trace=trace,
                attempts=attempt,
            )
            if decision.gate:
                self._pacer.hold(decision.delay)
            elif attempt < self._limits.max_attempts:
                if self._clock() + decision.delay > deadline:
                    break
                self._sleep(decision.delay)
        assert last is not None  # the loop ran at least once and every way out of it set `last`
        raise last

    def _token(self, claims: str | None, attempt: int) -> str:
        """One token fetch at a time per process, so a cold start asks the identity endpoint once.

        azure-identity caches the token, but concurrent first calls would each miss that cache.
        (MSAL also remembers a 5xx from the identity endpoint for 5 s, so waiters fail fast too.)
        """
        with self._token_lock:
            try:
                return self._credential.get_token(self._scope, claims=claims).token
            except ClientAuthenticationError as err:
                raise TransientError(
                    code=ErrorCode.CREDENTIAL_UNAVAILABLE,
                    message=f"no token for {self._scope}: {_first_line(err.message)}",
                    attempts=attempt - 1,
                ) from None

    def _send(self, request: GraphRequest, token: str) -> tuple[int | None, requests.Response | None, GraphTrace]:
        client_request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "client-request-id": client_request_id,
            **request.headers,
        }
        try:
            response = self._session.patch(
                request.url,
                json=request.body,
                headers=headers,
                timeout=(self._limits.connect_timeout, self._limits.read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as err:
            log_event(logger, logging.WARNING, "graphUnreachable", reason=type(err).__name__)
            return None, None, GraphTrace(client_request_id=client_request_id)
        return response.status_code, response, _trace(response.headers, client_request_id)


def _trace(headers: Mapping[str, str], client_request_id: str) -> GraphTrace:
    return GraphTrace(
        request_id=headers.get("request-id"),
        client_request_id=headers.get("client-request-id", client_request_id),
        date=headers.get("Date"),
        diagnostic=headers.get("x-ms-ags-diagnostic"),
    )


def _odata_error(response: requests.Response | None) -> tuple[str | None, str | None]:
    """The most specific OData error code (walking innerError) and the top-level message."""
    if response is None:
        return None, None
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None, None
    if not isinstance(error, dict):
        return None, None
    code: str | None = None
    node: Any = error
    while isinstance(node, dict):
        candidate = node.get("code")
        if isinstance(candidate, str) and candidate and not candidate.isdigit():
            code = candidate
        node = node.get("innerError", node.get("innererror"))
    message = error.get("message")
    return code, message if isinstance(message, str) else None


def _claims_challenge(response: requests.Response | None) -> str | None:
    """The decoded `claims` of a CAE challenge in WWW-Authenticate, if Graph sent one."""
    header = response.headers.get("WWW-Authenticate", "") if response is not None else ""
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
