"""Which tenants this deployment writes to, and each one's token source and write pacing.

The home tenant (a message without `tenantId`, or with HOME_TENANT_ID) is served with the
function's managed identity directly. Every other served tenant gets a token from the
multi-tenant app registration whose federated identity credential trusts that managed identity
("application trusts a managed identity"): azure-identity's `ClientAssertionCredential`, the
assertion being a managed-identity token for the cloud's token-exchange audience. No secret or
certificate exists anywhere. A tenant nobody configured is refused before any token request; which
tenants are served, and which wait paused, is `ServedTenants`' decision (shared/registry.py implements it).

Per tenant, built on first use and kept for the life of the process: one credential (so one
Graph token per tenant per lifetime, cached by azure-identity), one token lock (a cold start
asks Entra ID once per tenant) and one pacer: its share of the tenant's write budget and Retry-After
gate, drawn from a schedule every instance shares (shared/graph/budget.py), or a local split of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential

from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode, FieldError, MessageRejected
from shared.contract.tenants import TenantEntry
from shared.graph.pacing import Pacer

_CLOUDS: Final = {
    # Graph host: (Entra ID authority, token-exchange audience); graph-facts.md section 4 and
    # Entra's "Configure an application to trust a managed identity" (audiences per cloud).
    "graph.microsoft.com": ("https://login.microsoftonline.com", "api://AzureADTokenExchange"),
    "graph.microsoft.us": ("https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"),
    "dod-graph.microsoft.us": ("https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"),
    "microsoftgraph.chinacloudapi.cn": ("https://login.chinacloudapi.cn", "api://AzureADTokenExchangeChina"),
}
_AUDIENCE_BY_AUTHORITY: Final = {
    "login.microsoftonline.com": "api://AzureADTokenExchange",
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
    "login.partner.microsoftonline.cn": "api://AzureADTokenExchangeChina",
}


def authority_for(graph_base_url: str, authority_host: str | None) -> str:
    """AZURE_AUTHORITY_HOST if set, else the Entra ID of Graph's cloud (public for an unknown host)."""
    if authority_host:
        return authority_host
    host = urlsplit(graph_base_url).hostname or ""
    return _CLOUDS.get(host, _CLOUDS["graph.microsoft.com"])[0]


def exchange_scope(authority: str) -> str:
    """The scope of the managed-identity token the federated credential accepts, for this Entra ID cloud.

    An authority this table does not know (an emulator on loopback, a private cloud) gets the
    public cloud's audience, which is also the one Entra ID documents as the default.
    """
    host = urlsplit(authority).hostname or ""
    return _AUDIENCE_BY_AUTHORITY.get(host, "api://AzureADTokenExchange") + "/.default"


class ExchangeAssertion:
    """The assertion callback of every tenant's `ClientAssertionCredential`: one managed-identity token for all.

    The managed-identity credential caches the token until shortly before it expires; the lock
    keeps tenants whose first tokens are fetched at once from each asking the identity endpoint.
    """

    def __init__(self, identity: TokenCredential, scope: str) -> None:
        self._identity = identity
        self._scope = scope
        self._lock = threading.Lock()

    def __call__(self) -> str:
        """A current managed-identity token for the exchange audience."""
        with self._lock:
            return self._identity.get_token(self._scope).token


class TokenGate:
    """One token fetch at a time for a tenant, and the last failure, which its waiters share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures = 0  # guarded by `lock`, like the reason of the last one
        self.failure = ""


@dataclass(frozen=True)
class Tenant:
    """One tenant this process writes to; `tenant_id` None is the home tenant."""

    tenant_id: str | None
    credential: TokenCredential
    pacer: Pacer
    tokens: TokenGate = field(default_factory=TokenGate, compare=False)

    @property
    def label(self) -> str:
        """How logs name the tenant."""
        return self.tenant_id or "home"


class ServedTenants(Protocol):
    """The one decision `TenantDirectory` delegates: is this tenant served, active or paused, with which reserve."""

    def lookup(self, tenant_id: str) -> TenantEntry | None:
        """The tenant's entry, or None if it is not served; raises `TransientError` if that cannot be known now."""
        ...

    def paused_delay(self) -> float:
        """Seconds a paused tenant's message waits before it looks again (jittered)."""
        ...


class TenantDirectory:
    """The served tenants, each built on first use (thread-safe) and kept for the process's life."""

    def __init__(
        self,
        *,
        home_credential: TokenCredential,
        home_tenant_id: str | None,
        served: ServedTenants,
        cross_tenant_credential: Callable[[str], TokenCredential],
        pacer: Callable[[str | None], Pacer],
    ) -> None:
        self._home_credential = home_credential
        self._home_tenant_id = home_tenant_id
        self._served = served
        self._cross_tenant_credential = cross_tenant_credential
        self._pacer = pacer
        self._lock = threading.Lock()
        self._tenants: dict[str | None, Tenant] = {}

    def tenant(self, tenant_id: str | None, *, paused_ok: bool = False) -> Tenant:
        """The tenant a message names (None or HOME_TENANT_ID: home); `tenantNotAllowed` if it is not served.

        Asked on every message, so a tenant removed or paused since it was built is refused or waits
        (`DeferralRequested`, `tenantPaused`) from the next refresh of the registry on; `paused_ok` lets a consent
        check through.
        """
        key = None if tenant_id is None or tenant_id == self._home_tenant_id else tenant_id
        if key is not None:
            entry = self._served.lookup(key)
            if entry is None:
                raise MessageRejected(
                    code=ErrorCode.TENANT_NOT_ALLOWED,
                    message=f"this deployment does not serve tenant {key}",
                    details=[FieldError("tenantId", "not in the tenant registry, SERVED_TENANT_IDS or HOME_TENANT_ID")],
                )
            if entry.paused and not paused_ok:
                raise DeferralRequested(
                    self._served.paused_delay(), DeferralReason.TENANT_PAUSED, ErrorCode.TENANT_PAUSED
                )
        found = self._tenants.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._tenants.get(key)
            if found is None:
                credential = self._home_credential if key is None else self._cross_tenant_credential(key)
                found = self._tenants[key] = Tenant(key, credential, self._pacer(key))
            return found
