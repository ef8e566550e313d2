"""One PATCH to Graph, bounded as a whole (`patch_within`): a deadline for the entire answer, a cap on its body.

requests' read timeout applies to each socket read, so an answer that trickles in a byte at a time
never trips it. Here each connection hands its socket to the current PATCH's `_Watch` when it
starts reading the answer, and one process-wide reaper thread shuts that socket down if the deadline
passes first: the read in progress fails at once, wherever it was (status line, headers or body).
The body is streamed and reading stops past `max_body_bytes`.

How a connection hands over its socket is not urllib3's public API (a `ConnectionCls` of our own per
pool class, and the pool manager's `pool_classes_by_scheme`): it lives in one seam, `_watch_pools`,
built for the urllib3 versions `URLLIB3_TESTED` names, which requirements.txt pins and a test holds
the installed urllib3 to (docs/design.md, "The Graph answer in time and size").
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import socket
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager, ProxyManager
from urllib3.response import BaseHTTPResponse, HTTPResponse

_CHUNK_BYTES: Final = 64 * 1024
URLLIB3_TESTED: Final = ">=2.8,<2.9"
"""The urllib3 releases the watched connections were built and tested against (requirements.txt pins it)."""

Cut = Literal["tooLarge", "tooSlow", "broken"]


@dataclass(frozen=True)
class Answer:
    """Graph's status and headers, and as much of the body as was read (`cut` says why not all)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    cut: Cut | None = None


class AnswerTimeoutError(requests.exceptions.Timeout):
    """No status line and headers within the PATCH's deadline."""


def patch_within(
    session: requests.Session,
    url: str,
    *,
    body: Any,  # noqa: ANN401 - any JSON value
    headers: Mapping[str, str],
    connect_timeout: float,
    total_timeout: float,
    max_body_bytes: int,
) -> Answer:
    """PATCH `url`; the whole answer must arrive within `total_timeout` seconds of the call.

    Raises `requests.RequestException` when no status came (refused, dropped, too slow). Once a status
    came, it stands: a body that is too large, too slow or broken off is returned cut, not raised.
    """
    watch = _Watch(time.monotonic() + total_timeout)
    scope = _current_watch.set(watch)
    _REAPER.add(watch)
    try:
        try:
            response = send(session, prepare(session, url, body, headers), (connect_timeout, total_timeout))
        except requests.RequestException as err:
            if watch.fired:
                raise AnswerTimeoutError(_late(total_timeout)) from err
            raise
        if watch.fired:  # cut off while the status line or headers came in: parsed from a fragment, if at all
            response.close()
            raise AnswerTimeoutError(_late(total_timeout))
        content, cut = _read_body(response, max_body_bytes, watch)
        return Answer(status=response.status_code, headers=response.headers, body=content, cut=cut)
    finally:
        watch.disarm()
        _current_watch.reset(scope)


def prepare(session: requests.Session, url: str, body: Any, headers: Mapping[str, str]) -> requests.PreparedRequest:  # noqa: ANN401 - any JSON value
    """The PATCH as `Session.prepare_request` would make it from `json=`, without its per-request merging.

    The session's headers are fixed, it keeps no cookies or auth for Graph, and the route's URL is
    already an encoded ASCII URL, so merging them per request (most of requests' own CPU per message,
    docs/benchmarks.md "Tenants") would give the same bytes on the wire.
    """
    content = json.dumps(body, allow_nan=False).encode()  # what requests' json= sends
    prepared = requests.PreparedRequest()
    prepared.method = "PATCH"
    if url.isascii():
        prepared.url = url
    else:  # never from shared.graph.routes; requests' own quoting, to be safe
        prepared.prepare_url(url, None)
    prepared.headers = CaseInsensitiveDict(
        {
            **{name: str(value) for name, value in session.headers.items()},
            "Content-Type": "application/json",
            "Content-Length": str(len(content)),
            **headers,
        }
    )
    prepared.body = content
    return prepared


def send(
    session: requests.Session, prepared: requests.PreparedRequest, timeout: tuple[float, float]
) -> requests.Response:
    """Through `Session.send` (its keep-alive pool, streamed, no redirects followed).

    `Session.send` rather than the adapter: it is where OpenTelemetry's requests instrumentation
    makes each PATCH a dependency span (docs/operations.md).
    """
    return session.send(prepared, timeout=timeout, allow_redirects=False, stream=True, proxies=session.proxies)


def _late(seconds: float) -> str:
    return f"no complete status line and headers within {seconds:g} s"


def _read_body(response: requests.Response, max_bytes: int, watch: _Watch) -> tuple[bytes, Cut | None]:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                response.close()  # the connection is dropped, not drained
                return b"".join(chunks), "tooLarge"
            chunks.append(chunk)
    except requests.RequestException:
        response.close()
        return b"".join(chunks), "tooSlow" if watch.fired else "broken"
    return b"".join(chunks), None  # read to the end: the connection goes back to the pool


class _Watch:
    """One PATCH's deadline and the sockets it reads from."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self.disarmed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if not self.fired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def fire(self) -> None:
        with self._lock:
            if self.disarmed:
                return
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def disarm(self) -> None:
        with self._lock:
            self.disarmed = True
            self._sockets = []


def _shut(sock: socket.socket) -> None:
    """End every read on `sock` now (the base class's shutdown, so TLS state is left to its reader)."""
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current_watch: ContextVar[_Watch | None] = ContextVar("certstate_graph_watch", default=None)


class _Reaper:
    """One daemon thread that fires watches whose deadline passed (not a timer thread per request)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch) -> None:
        with self._cond:
            heapq.heappush(self._due, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="certstate-graph-deadlines", daemon=True)
                self._thread.start()
            elif self._due[0][2] is watch:  # sooner than what the thread sleeps towards
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._due and self._due[0][2].disarmed:
                        heapq.heappop(self._due)
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        watch = heapq.heappop(self._due)[2]
                        break
                    self._cond.wait(self._due[0][0] - now if self._due else None)
            watch.fire()


_REAPER: Final = _Reaper()


def _watch_socket(sock: socket.socket | None) -> None:
    watch = _current_watch.get()
    if watch is not None:
        watch.add(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 declares it
        _watch_socket(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 declares it
        _watch_socket(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: Final[dict[str, type[HTTPConnectionPool]]] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _Answered(requests.Response):
    """A response requests never takes for a redirect.

    `Session.send` with `allow_redirects=False` still walks `resolve_redirects` to offer `Response.next`:
    it reads the whole body past our cap, closes the connection and builds the follow-up request (which
    fails on our prepared request, made without a cookie jar). A 3xx from Graph is an answer, reported as
    such (docs/outcomes.md), and its Location is never followed.
    """

    @property
    def is_redirect(self) -> bool:
        """Never: nothing here follows a Location."""
        return False


class WatchedAdapter(HTTPAdapter):
    """An `HTTPAdapter` whose connections report their socket to the PATCH in progress."""

    def build_response(self, req: requests.PreparedRequest, resp: BaseHTTPResponse) -> requests.Response:
        """The response requests builds, as one that is never a redirect to follow (no state is added)."""
        response = super().build_response(req, resp)
        response.__class__ = _Answered
        return response

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:  # noqa: ANN401 - requests' signature
        """Pools of watched connections."""
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:  # noqa: ANN401 - requests' signature
        """The proxy's pools watched too (not a SOCKS proxy's, which keep only the per-read timeout)."""
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:
            _watch_pools(manager)
        return manager


def _watch_pools(manager: PoolManager) -> None:
    """The one place that reaches past urllib3's public API (see `URLLIB3_TESTED`)."""
    manager.pool_classes_by_scheme = _WATCHED_POOLS
