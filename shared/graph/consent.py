"""A consent check: whether this deployment gets a token in the tenant, and whether its app role works there.

Through the function's own credential path (the only one holding the federated credential): the
tenant's credential asks Entra ID for a Graph token (under the tenant's token gate, as a PATCH would),
then one Graph read that needs the app role, `GET deviceManagement/deviceConfigurations?$top=1&$select=id`.
No Graph write is ever made. Entra's refusal is read from the AADSTS code azure-identity passes on:

- an AADSTS code naming the tenant's side (no service principal, no consent, no such tenant) -> notConsented;
- any other failure to get a token (Entra unreachable, the deployment's own federated credential refused)
  -> `credentialUnavailable`, transient like a PATCH's;
- Graph answers 403 to the read -> roleMissing (consented, without DeviceManagementConfiguration.ReadWrite.All);
- 2xx -> consented; 429, 5xx, timeouts -> `graphUnavailable`, transient; any other answer -> `graphRequestFailed`.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Final

import requests

from shared.contract.errors import ErrorCode, GraphRefused, TransientError
from shared.contract.outcomes import ConsentState
from shared.graph.tenancy import Tenant
from shared.logs import log_event

logger = logging.getLogger("certstate")

MAX_ANSWER_BYTES: Final = 65536
"""The most of the read's answer kept: an id, or Graph's error body (each socket read bounded by the read timeout)."""
READ_PATH: Final = "/deviceManagement/deviceConfigurations?$top=1&$select=id"
"""A read the app role allows, answering at most one id (the tenant's own data is not kept or logged)."""
TENANT_SIDE_CODES: Final = frozenset({
    "AADSTS7000229",  # the client application is missing a service principal in the tenant (no admin consent)
    "AADSTS700016",  # application not found in the directory
    "AADSTS65001",  # the user or administrator has not consented
    "AADSTS500011",  # the resource principal was not found in the tenant
    "AADSTS90002",  # tenant not found
    "AADSTS900023",  # the tenant identifier is not valid
    "AADSTS7000112",  # the application is disabled in the tenant
})  # fmt: skip
"""Entra ID codes meaning the tenant has not (or no longer) let the app in; others: the deployment's, or transient."""
_AADSTS: Final = re.compile(r"AADSTS\d{5,7}")


@dataclass(frozen=True)
class ConsentResult:
    """What the check found; `entra_code` / `graph_code` say why when it is not consented."""

    state: ConsentState
    message: str
    entra_code: str | None = None
    graph_code: str | None = None
    http_status: int | None = None


@dataclass(frozen=True)
class ReadLimits:
    """How long the token gate may be waited for, and the Graph read's connect and read timeouts."""

    gate_seconds: float
    connect_timeout: float
    read_timeout: float


def check_consent(
    tenant: Tenant, *, session: requests.Session, scope: str, graph_base_url: str, limits: ReadLimits
) -> ConsentResult:
    """Ask for the tenant's token, then read one id with it; raises `TransientError` when it cannot tell yet."""
    token = _token(tenant, scope, limits.gate_seconds)
    if isinstance(token, ConsentResult):
        return token
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "client-request-id": str(uuid.uuid4())}
    try:
        with session.get(
            graph_base_url + READ_PATH,
            headers=headers,
            timeout=(limits.connect_timeout, limits.read_timeout),
            allow_redirects=False,
            stream=True,
        ) as answer:
            status, body = answer.status_code, answer.raw.read(MAX_ANSWER_BYTES, decode_content=True)
    except (requests.RequestException, OSError) as err:
        raise TransientError(
            code=ErrorCode.GRAPH_UNAVAILABLE, message=f"the consent read failed: {type(err).__name__}"
        ) from None
    graph_code = _graph_code(body)
    log_event(logger, logging.INFO, "consentRead", tenantId=tenant.tenant_id, httpStatus=status, graphCode=graph_code)
    if 200 <= status < 300:
        return ConsentResult(
            ConsentState.CONSENTED, "a token was issued and the app role reads Intune", http_status=status
        )
    if status == 403:
        return ConsentResult(
            ConsentState.ROLE_MISSING,
            "consented, but Graph refuses the read: DeviceManagementConfiguration.ReadWrite.All is not granted",
            graph_code=graph_code,
            http_status=status,
        )
    if status in (401, 429) or status >= 500:
        raise TransientError(
            code=ErrorCode.GRAPH_UNAVAILABLE, message=f"the consent read was answered {status}", http_status=status
        )
    raise GraphRefused(
        code=ErrorCode.GRAPH_REQUEST_FAILED,
        message=f"the consent read was answered {status}",
        http_status=status,
        graph_code=graph_code,
    )


def _token(tenant: Tenant, scope: str, gate_seconds: float) -> str | ConsentResult:
    """The tenant's Graph token, or the refusal Entra ID answered for the tenant's side."""
    gate = tenant.tokens
    if not gate.lock.acquire(timeout=gate_seconds):
        raise TransientError(code=ErrorCode.CREDENTIAL_UNAVAILABLE, message="another token request did not finish")
    try:
        return tenant.credential.get_token(scope).token
    except Exception as err:  # whatever the credential raises, there is no token
        text = str(err)
        code = next(iter(_AADSTS.findall(text)), None)
        log_event(logger, logging.WARNING, "consentTokenRefused", tenantId=tenant.tenant_id,
                  reason=type(err).__name__, entraCode=code)  # fmt: skip
        if code in TENANT_SIDE_CODES:
            return ConsentResult(ConsentState.NOT_CONSENTED, f"Entra ID refused the token: {code}", entra_code=code)
        where = f" ({code})" if code else ""
        raise TransientError(
            code=ErrorCode.CREDENTIAL_UNAVAILABLE, message=f"no token in tenant {tenant.label}{where}"
        ) from None
    finally:
        gate.lock.release()


def _graph_code(body: bytes) -> str | None:
    """`error.code` of Graph's JSON error body, if it has one."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code)[:128] if isinstance(code, str) else None
