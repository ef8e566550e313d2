"""Stand-in for the App Service / Functions managed-identity endpoint (`IDENTITY_ENDPOINT`).

With `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` from `IdentityEmulator.env()` in the environment,
azure-identity's `ManagedIdentityCredential` (MSAL's App Service flow) works against it unchanged:
`GET /msi/token?api-version=2019-08-01&resource=...[&client_id=...]` with `X-IDENTITY-HEADER`.

How it differs from the real endpoint:
- tokens are not JWTs but `certstate-mi.<base64url payload>.<hmac-sha256 hex>`; only holders of the
  signing key (the Graph simulator) can verify them, statelessly, with `verify_token`;
- there is no Entra ID behind it: any resource and any user-assigned id is granted, and a
  `mi_res_id`/`object_id` selector gets a client id derived from it;
- only api-version 2019-08-01 (the one azure-identity sends) is served; error bodies have App
  Service's `{"statusCode", "message"}` shape with messages of our own.

The module also holds what both emulators share: `LoopbackServer` (aiohttp on a background thread),
`LoopbackService` (start/stop/`with`) and `serve_until_signalled` (their command lines).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import json
import secrets
import signal
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Self

from aiohttp import web

TOKEN_PREFIX = "certstate-mi"  # noqa: S105 - a format marker, not a secret
TOKEN_PATH = "/msi/token"  # noqa: S105 - a URL path
API_VERSION = "2019-08-01"
SYSTEM_ASSIGNED_CLIENT_ID = "5a5a55e0-0000-4000-8000-00000000c0de"
"""The appid a token carries when no user-assigned identity was asked for."""
HOME_TENANT_ID = "40e40e00-0000-4000-8000-0000000000e0"
"""The `tid` of the managed identity's tokens: the tenant of the function's own identity."""

_SELECTORS = ("client_id", "mi_res_id", "object_id")


class LoopbackServer:
    """Serves an aiohttp app on 127.0.0.1 from a daemon thread with its own event loop.

    Tests and the local runner are synchronous, so the emulators cannot borrow a caller's loop;
    a private loop also keeps a slow handler (injected latency) from blocking the test thread.
    """

    def __init__(
        self,
        app_factory: Callable[[], web.Application],
        port: int = 0,
        name: str = "devstack",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._app_factory = app_factory
        self._requested_port = port
        self._name = name
        self._ssl_context = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; known only once started."""
        if self._port is None:
            msg = f"{self._name} is not running"
            raise RuntimeError(msg)
        return self._port

    def start(self) -> int:
        """Bind, start serving and return the port; raises whatever binding raised."""
        if self._thread is not None:
            msg = f"{self._name} was already started"
            raise RuntimeError(msg)
        loop = asyncio.new_event_loop()
        bound: concurrent.futures.Future[int] = concurrent.futures.Future()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(self._app_factory(), access_log=None, shutdown_timeout=1.0)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", self._requested_port, ssl_context=self._ssl_context)
                loop.run_until_complete(site.start())
            except BaseException as exc:
                loop.run_until_complete(runner.cleanup())
                loop.close()
                bound.set_exception(exc)
                return
            bound.set_result(runner.addresses[0][1])
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            # TLS connections can outlive cleanup (a close_notify never answered, a handshake the client
            # refused): close whatever sockets the loop still holds, so none is left to the GC.
            for transport in list(getattr(loop, "_transports", {}).values()):
                transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        self._port = bound.result(timeout=10)
        return self._port

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent."""
        if self._loop is None or self._thread is None:
            return
        if self._port is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._port = None
        self._loop = None


class LoopbackService:
    """Base of the emulators: start/stop and `with` around a `LoopbackServer` of `_make_app()`."""

    def __init__(self, port: int, name: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = LoopbackServer(self._make_app, port=port, name=name, ssl_context=ssl_context)
        self._scheme = "https" if ssl_context else "http"

    def _make_app(self) -> web.Application:
        raise NotImplementedError

    def start(self) -> None:
        """Start serving on a free loopback port (or the one given to the constructor)."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT` (https with TLS), once started."""
        return f"{self._scheme}://127.0.0.1:{self._server.port}"


@dataclass(frozen=True)
class TokenClaims:
    """What a devstack token asserts: audience, app (client) id, issue time, expiry, a unique id and the tenant."""

    aud: str
    appid: str
    iat: float
    exp: int
    jti: str
    tid: str = ""

    @classmethod
    def issue(
        cls, audience: str, appid: str, lifetime_s: int = 3600, now: float | None = None, tid: str = ""
    ) -> TokenClaims:
        """Fresh claims for `audience` in tenant `tid`, valid `lifetime_s` seconds from `now` (wall clock)."""
        issued = time.time() if now is None else now
        return cls(aud=audience, appid=appid, iat=issued, exp=int(issued) + lifetime_s, jti=uuid.uuid4().hex, tid=tid)

    def sign(self, signing_key: bytes) -> str:
        """Return the token string for these claims."""
        # The leading space keeps the base64 from starting with "eyJ", so a token pasted into a
        # file never looks like a JWT to secret scanners; JSON allows the whitespace.
        payload = _b64(b" " + json.dumps(asdict(self), separators=(",", ":")).encode())
        signed = f"{TOKEN_PREFIX}.{payload}"
        return f"{signed}.{_mac(signing_key, signed)}"


def verify_token(token: str, signing_key: bytes, audience: str, now: float | None = None) -> TokenClaims | None:
    """Return the claims of `token` if it is ours, untampered, for `audience` and unexpired at `now`.

    Audiences compare without a trailing slash, as Entra ID treats `https://host` and `https://host/` alike.
    """
    prefix, _, rest = token.partition(".")
    payload, dot, signature = rest.partition(".")
    if prefix != TOKEN_PREFIX or not dot:
        return None
    expected = _mac(signing_key, f"{prefix}.{payload}")
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    try:
        raw = json.loads(_unb64(payload))
    except ValueError:
        return None
    claims = _claims_from(raw)
    if claims is None or claims.aud.rstrip("/") != audience.rstrip("/"):
        return None
    if (time.time() if now is None else now) >= claims.exp:
        return None
    return claims


def _claims_from(raw: object) -> TokenClaims | None:
    if not isinstance(raw, dict):
        return None
    aud, appid, iat, exp, jti, tid = (raw.get(k) for k in ("aud", "appid", "iat", "exp", "jti", "tid"))
    if not all(isinstance(value, str) for value in (aud, appid, jti, tid)):
        return None
    if not (isinstance(iat, int | float) and isinstance(exp, int)) or isinstance(exp, bool):
        return None
    return TokenClaims(aud=str(aud), appid=str(appid), iat=float(iat), exp=exp, jti=str(jti), tid=str(tid))


def _mac(signing_key: bytes, signed: str) -> str:
    return hmac.new(signing_key, signed.encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _app_service_error(status: int, message: str) -> web.Response:
    return web.json_response({"statusCode": status, "message": message}, status=status)


class IdentityEmulator(LoopbackService):
    """The managed-identity endpoint of an App Service / Functions host, on loopback."""

    def __init__(
        self,
        signing_key: bytes | None = None,
        token_lifetime_s: int = 3600,
        header_secret: str | None = None,
        *,
        port: int = 0,
        tenant_id: str = HOME_TENANT_ID,
    ) -> None:
        self.signing_key = signing_key or secrets.token_bytes(32)
        self.header = header_secret or secrets.token_urlsafe(24)
        self.tenant_id = tenant_id
        self._by_resource: Counter[str] = Counter()
        self._lifetime_s = token_lifetime_s
        self._lock = threading.Lock()
        self._token_requests = 0
        self._tokens_issued = 0
        self._forced: deque[int] = deque()
        self._failing = False
        self._latency_s = 0.0
        super().__init__(port, "identity-emulator")

    @property
    def endpoint(self) -> str:
        """The IDENTITY_ENDPOINT value."""
        return f"{self.origin}{TOKEN_PATH}"

    def env(self) -> dict[str, str]:
        """Return the environment that points `ManagedIdentityCredential` (App Service flow) here."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}

    @property
    def token_requests(self) -> int:
        """Requests that reached the token endpoint, failed ones included."""
        with self._lock:
            return self._token_requests

    @property
    def tokens_issued(self) -> int:
        """Tokens handed out (200 answers)."""
        with self._lock:
            return self._tokens_issued

    def tokens_by_resource(self) -> dict[str, int]:
        """Tokens handed out per resource (Graph's origin, the token-exchange audience)."""
        with self._lock:
            return dict(self._by_resource)

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` token requests with `status`, before any other check."""
        with self._lock:
            self._forced.extend([status] * n)

    def set_failing(self, failing: bool) -> None:
        """Answer every token request 500 (after any `fail_next` ones) until switched off."""
        with self._lock:
            self._failing = failing

    def set_latency(self, seconds: float) -> None:
        """Answer every token request `seconds` late (a slow or stalled endpoint); 0 switches it off."""
        with self._lock:
            self._latency_s = seconds

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Answer what App Service refuses: a missing or wrong secret header, a malformed query."""
        supplied = request.headers.get("X-IDENTITY-HEADER")
        if supplied is None:
            return _app_service_error(400, "The X-IDENTITY-HEADER header is missing.")
        if not hmac.compare_digest(supplied.encode(), self.header.encode()):
            return _app_service_error(401, "The X-IDENTITY-HEADER header does not match.")
        query = request.query
        if query.get("api-version") != API_VERSION:
            return _app_service_error(400, f"Unsupported api-version; this emulator serves {API_VERSION}.")
        if not query.get("resource"):
            return _app_service_error(400, "The resource query parameter is missing.")
        if sum(1 for name in _SELECTORS if query.get(name)) > 1:
            return _app_service_error(400, "Give at most one of client_id, mi_res_id and object_id.")
        return None

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(TOKEN_PATH, self._token)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        with self._lock:
            self._token_requests += 1
            forced = self._forced.popleft() if self._forced else (500 if self._failing else None)
            latency_s = self._latency_s
        if latency_s:
            await asyncio.sleep(latency_s)
        if forced is not None:
            return _app_service_error(forced, "Injected failure from the devstack identity emulator.")
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        resource = request.query["resource"]
        selectors = [(name, request.query[name]) for name in _SELECTORS if request.query.get(name)]
        claims = TokenClaims.issue(resource, _client_id_for(selectors), self._lifetime_s, tid=self.tenant_id)
        with self._lock:
            self._tokens_issued += 1
            self._by_resource[resource] += 1
        return web.json_response(
            {
                "access_token": claims.sign(self.signing_key),
                "expires_on": str(claims.exp),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": claims.appid,
            }
        )


def _client_id_for(selectors: list[tuple[str, str]]) -> str:
    """Pick the token's app id: the client_id asked for, one derived from another selector, or ours."""
    if not selectors:
        return SYSTEM_ASSIGNED_CLIENT_ID
    name, value = selectors[0]
    return value if name == "client_id" else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}:{value}"))


def serve_until_signalled(
    start: Callable[[], object], stop: Callable[[], object], lines: Callable[[], list[str]]
) -> None:
    """Start, print `lines()` flushed (a parent process reads them), serve until SIGINT/SIGTERM, stop."""
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    start()
    try:
        print("\n".join(lines()), flush=True)
        done.wait()
    finally:
        stop()


def main(argv: list[str] | None = None) -> None:
    """Serve the managed-identity endpoint; prints IDENTITY_ENDPOINT=... and IDENTITY_HEADER=... lines."""
    parser = argparse.ArgumentParser(prog="python -m devstack.identity_emulator", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--signing-key-hex", help="token signing key, shared with the Graph simulator")
    parser.add_argument("--header-secret", help="the IDENTITY_HEADER value (default: random)")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="token lifetime in seconds")
    args = parser.parse_args(argv)
    key = bytes.fromhex(args.signing_key_hex) if args.signing_key_hex else None
    emulator = IdentityEmulator(key, args.token_lifetime, args.header_secret, port=args.port)
    serve_until_signalled(
        emulator.start, emulator.stop, lambda: [f"{name}={value}" for name, value in emulator.env().items()]
    )


if __name__ == "__main__":
    main()
