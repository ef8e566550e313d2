"""Stand-in for Microsoft Entra ID's v2.0 token endpoint, for the multi-tenant app's client-assertion flow.

Served over HTTPS on 127.0.0.1 with a certificate from a CA made on the spot (`LoopbackCA`, with
`trustme`), because azure-identity accepts only an https authority. Point the production credential
at it with `AZURE_AUTHORITY_HOST=<origin>` and trust the CA with `REQUESTS_CA_BUNDLE=<ca_path>`:
azure-identity's `ClientAssertionCredential` then runs unchanged. (It posts straight to
`<authority>/<tenant>/oauth2/v2.0/token` through azure-core, not through MSAL, so there is no instance
discovery or authority validation to switch off; an MSAL-based credential would need
`disable_instance_discovery=True` against a loopback authority.)

Served:
- `GET /{tenant}/v2.0/.well-known/openid-configuration`: OpenID discovery (issuer, token endpoint, ...);
- `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`, `client_id`,
  `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, `client_assertion`
  and `scope=<resource>/.default`.

What it checks, as Entra ID does for "application trusts a managed identity": the client is the one
multi-tenant app it knows; the tenant has consented to it (`consented_tenants`); the assertion is a token
the identity emulator (same signing key) issued for the token-exchange audience, unexpired, to the managed
identity the app's federated credential names (`trusted_identity`). Answers carry AADSTS codes in
Entra's error body shape. Tokens are devstack tokens (`identity_emulator.TokenClaims`) with the tenant's
`tid` and the app's `appid`, for the Graph simulator to verify.

How it differs: no JWTs or signing keys (`jwks_uri` is served but empty), no other grants, no
`/common` or `/organizations` tenants, no claims challenges (a `claims` parameter is accepted and ignored).
"""

from __future__ import annotations

import argparse
import ssl
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import trustme
from aiohttp import web

from devstack.identity_emulator import LoopbackService, TokenClaims, serve_until_signalled, verify_token

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
MULTITENANT_APP_CLIENT_ID = "a99a0000-0000-4000-8000-00000000a990"
"""The multi-tenant app's client id the local stack uses."""


class LoopbackCA:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost; the CA's PEM in a temp file."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="certstate devstack")
        self._server = self._ca.issue_cert("127.0.0.1", "localhost")
        self._dir = tempfile.TemporaryDirectory(prefix="certstate-ca-")
        self.ca_path = Path(self._dir.name) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the loopback certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server.configure_cert(context)
        return context

    def close(self) -> None:
        """Delete the CA file."""
        self._dir.cleanup()


_TENANT_REFUSALS = {
    7000229: ("invalid_client", "The client application {app} is missing service principal in the tenant {tenant}."),
    65001: (
        "invalid_grant",
        "The user or administrator has not consented to use the application with ID '{app}'. Send an interactive "
        "authorization request for this user and resource.",
    ),
    700016: (
        "unauthorized_client",
        "Application with identifier '{app}' was not found in the directory '{tenant}'. This can happen if the "
        "application has not been installed by the administrator of the tenant or consented to by any user in the "
        "tenant.",
    ),
}
"""What Entra ID answers a client-credentials request from a tenant that has not let the app in."""


def _entra_error(status: int, error: str, code: int, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": f"AADSTS{code}: {description}", "error_codes": [code]}, status=status
    )


class EntraEmulator(LoopbackService):
    """Entra ID's token endpoint for one multi-tenant app, on https://127.0.0.1."""

    def __init__(
        self,
        signing_key: bytes,
        *,
        trusted_identity: str,
        consented_tenants: Iterable[str],
        app_client_id: str = MULTITENANT_APP_CLIENT_ID,
        ca: LoopbackCA | None = None,
        token_lifetime_s: int = 3600,
        port: int = 0,
    ) -> None:
        self._signing_key = signing_key
        self.trusted_identity = trusted_identity
        self.app_client_id = app_client_id
        self._consented = {t.lower() for t in consented_tenants}
        self._refusals: dict[str, int] = {}  # tenant -> the AADSTS code its refusal carries (default 7000229)
        self._owns_ca = ca is None
        self.ca = ca or LoopbackCA()
        self._lifetime_s = token_lifetime_s
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._issued: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        super().__init__(port, "entra-emulator", ssl_context=self.ca.server_context())

    def stop(self) -> None:
        """Stop serving (and delete the CA file if this emulator made it)."""
        super().stop()
        if self._owns_ca:
            self.ca.close()

    def env(self) -> dict[str, str]:
        """The environment that points azure-identity here and makes requests trust the CA."""
        return {"AZURE_AUTHORITY_HOST": self.origin, "REQUESTS_CA_BUNDLE": str(self.ca.ca_path)}

    def consent(self, tenant_id: str, granted: bool = True) -> None:
        """Grant (or revoke) the tenant's admin consent to the app."""
        with self._lock:
            (self._consented.add if granted else self._consented.discard)(tenant_id.lower())

    def refuse(self, tenant_id: str, code: int = 7000229) -> None:
        """Revoke the tenant's consent and refuse its token requests with this AADSTS code (see `_TENANT_REFUSALS`)."""
        if code not in _TENANT_REFUSALS:
            msg = f"AADSTS{code} is not one this emulator answers for a tenant; known: {sorted(_TENANT_REFUSALS)}"
            raise ValueError(msg)
        with self._lock:
            self._consented.discard(tenant_id.lower())
            self._refusals[tenant_id.lower()] = code

    def stats(self) -> dict[str, dict[str, int]]:
        """Token requests, tokens issued and refusals, per tenant as the URL named it."""
        with self._lock:
            return {"requests": dict(self._requests), "issued": dict(self._issued), "refused": dict(self._refused)}

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self._keys)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        base = f"{self.origin}/{tenant}"
        return web.json_response(
            {
                "issuer": f"{base}/v2.0",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "grant_types_supported": ["client_credentials"],
                "tenant_region_scope": "WW",
                "cloud_instance_name": "devstack.loopback",
            }
        )

    async def _keys(self, _: web.Request) -> web.Response:
        return web.json_response({"keys": []})

    async def _token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"].lower()
        form = await request.post()
        with self._lock:
            self._requests[tenant] += 1
        refusal = self._refusal(tenant, {k: str(v) for k, v in form.items()})
        if refusal is not None:
            with self._lock:
                self._refused[tenant] += 1
            return refusal
        resource = str(form["scope"]).removesuffix("/.default")
        claims = TokenClaims.issue(resource, self.app_client_id, self._lifetime_s, tid=tenant)
        with self._lock:
            self._issued[tenant] += 1
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self._lifetime_s,
                "ext_expires_in": self._lifetime_s,
                "access_token": claims.sign(self._signing_key),
            }
        )

    def _refusal(self, tenant: str, form: dict[str, str]) -> web.Response | None:  # noqa: PLR0911 - one per AADSTS
        """Entra's answer to what it would refuse, or None."""
        if form.get("grant_type") != "client_credentials":
            return _entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.app_client_id:
            return _entra_error(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{tenant}'.",
            )  # fmt: skip
        if tenant not in self._consented:
            code = self._refusals.get(tenant, 7000229)
            error, description = _TENANT_REFUSALS[code]
            return _entra_error(400, error, code, description.format(app=self.app_client_id, tenant=tenant))
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            return _entra_error(400, "invalid_client", 7000218, "The request body must contain a client_assertion.")
        identity = verify_token(form["client_assertion"], self._signing_key, EXCHANGE_AUDIENCE)
        if identity is None:
            return _entra_error(
                400, "invalid_client", 700211,
                f"No matching federated identity record found for presented assertion audience (or the assertion "
                f"is not a token the identity endpoint issued for {EXCHANGE_AUDIENCE}, or it expired).",
            )  # fmt: skip
        if identity.appid != self.trusted_identity:
            return _entra_error(
                400, "invalid_client", 700213,
                f"No matching federated identity record found for presented assertion subject '{identity.appid}'.",
            )  # fmt: skip
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or " " in scope:
            return _entra_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid; use <app>/.default."
            )
        return None


def main(argv: list[str] | None = None) -> None:
    """Serve the token endpoint; prints AZURE_AUTHORITY_HOST=... and REQUESTS_CA_BUNDLE=... lines."""
    parser = argparse.ArgumentParser(prog="python -m devstack.entra_emulator", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--signing-key-hex", required=True, help="the identity emulator's token signing key")
    parser.add_argument("--trusted-identity", required=True, help="client id of the managed identity the app trusts")
    parser.add_argument("--tenant", action="append", default=[], help="a tenant that consented (repeatable)")
    parser.add_argument("--app-client-id", default=MULTITENANT_APP_CLIENT_ID)
    args = parser.parse_args(argv)
    emulator = EntraEmulator(
        bytes.fromhex(args.signing_key_hex),
        trusted_identity=args.trusted_identity,
        consented_tenants=args.tenant,
        app_client_id=args.app_client_id,
        port=args.port,
    )
    serve_until_signalled(
        emulator.start, emulator.stop, lambda: [f"{name}={value}" for name, value in emulator.env().items()]
    )


if __name__ == "__main__":
    main()
