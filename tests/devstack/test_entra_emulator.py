"""The Entra emulator serves azure-identity's real ClientAssertionCredential over HTTPS, as the function wires it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

from devstack.entra_emulator import EXCHANGE_AUDIENCE, MULTITENANT_APP_CLIENT_ID, EntraEmulator
from devstack.identity_emulator import SYSTEM_ASSIGNED_CLIENT_ID, IdentityEmulator, TokenClaims, verify_token
from shared.graph.tenancy import TenantDirectory
from shared.settings import Settings
from shared.wiring import build_tenants

KEY = bytes(range(32))
GRAPH = "http://127.0.0.1:1234"
TENANTS = ("1111bbbb-0000-4000-8000-000000000002", "2222cccc-0000-4000-8000-000000000003")
STRANGER = "9999dddd-0000-4000-8000-000000000009"


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEmulator]:
    with IdentityEmulator(signing_key=KEY) as emulator:
        for name in ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID"):
            monkeypatch.delenv(name, raising=False)
        for name, value in emulator.env().items():
            monkeypatch.setenv(name, value)
        yield emulator


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch) -> Iterator[EntraEmulator]:
    """The emulator, with azure-identity pointed at it through its own variables."""
    with EntraEmulator(KEY, trusted_identity=SYSTEM_ASSIGNED_CLIENT_ID, consented_tenants=TENANTS) as emulator:
        for name, value in emulator.env().items():
            monkeypatch.setenv(name, value)
        yield emulator


@pytest.fixture
def wired(entra: EntraEmulator) -> Iterator[Callable[..., TenantDirectory]]:
    """`shared.wiring.build_tenants` as the function calls it; every credential it made is closed afterwards."""
    with ExitStack() as closing:

        def build(served: tuple[str, ...] = TENANTS) -> TenantDirectory:
            settings = Settings(
                GRAPH_BASE_URL=f"{GRAPH}/beta", SERVED_TENANT_IDS=",".join(served),
                MULTITENANT_APP_CLIENT_ID=MULTITENANT_APP_CLIENT_ID, AZURE_AUTHORITY_HOST=entra.origin,
            )  # fmt: skip
            tenants = build_tenants(settings, closing.enter_context(ManagedIdentityCredential()))
            closing.callback(lambda: [t.credential.close() for t in tenants.built()])  # type: ignore[attr-defined]
            return tenants

        yield build


def test_the_production_wiring_gets_one_token_per_tenant_with_the_tenants_tid(identity, entra, wired):
    tenants = wired()
    for _ in range(3):
        for tenant_id in TENANTS:
            token = tenants.tenant(tenant_id).credential.get_token(f"{GRAPH}/.default").token
            claims = verify_token(token, KEY, GRAPH)
            assert claims is not None
            assert (claims.tid, claims.appid) == (tenant_id, MULTITENANT_APP_CLIENT_ID)
    assert entra.stats()["issued"] == dict.fromkeys(TENANTS, 1)  # one Graph token per tenant per lifetime
    assert identity.tokens_by_resource() == {EXCHANGE_AUDIENCE: 1}  # one assertion for every tenant


def test_concurrent_first_tokens_of_several_tenants_ask_the_identity_endpoint_once(identity, wired):
    tenants = wired()
    threads = [
        threading.Thread(target=tenants.tenant(t).credential.get_token, args=(f"{GRAPH}/.default",)) for t in TENANTS
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert identity.tokens_by_resource() == {EXCHANGE_AUDIENCE: 1}


def test_a_tenant_that_never_consented_gets_no_token(identity, entra, wired):
    tenants = wired((*TENANTS, STRANGER))
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000229"):
        tenants.tenant(STRANGER).credential.get_token(f"{GRAPH}/.default")
    entra.consent(STRANGER)
    assert tenants.tenant(STRANGER).credential.get_token(f"{GRAPH}/.default").token


MI = SYSTEM_ASSIGNED_CLIENT_ID


@pytest.mark.parametrize(
    ("assertion", "code"),
    [
        (TokenClaims.issue(GRAPH, MI).sign(KEY), "AADSTS700211"),  # a Graph token, not one for the exchange
        (TokenClaims.issue(EXCHANGE_AUDIENCE, MI).sign(b"x" * 32), "AADSTS700211"),  # not the identity endpoint's
        (TokenClaims.issue(EXCHANGE_AUDIENCE, MI, now=0).sign(KEY), "AADSTS700211"),  # expired
        (TokenClaims.issue(EXCHANGE_AUDIENCE, "another-identity").sign(KEY), "AADSTS700213"),  # not the trusted one
    ],
)
def test_only_the_trusted_identitys_exchange_token_is_accepted(entra, assertion: str, code: str):
    with (
        ClientAssertionCredential(TENANTS[0], MULTITENANT_APP_CLIENT_ID, lambda: assertion) as credential,
        pytest.raises(ClientAuthenticationError, match=code),
    ):
        credential.get_token(f"{GRAPH}/.default")
    assert entra.stats()["issued"] == {}


def test_discovery_is_served_over_tls_that_only_the_generated_ca_vouches_for(entra):
    url = f"{entra.origin}/{TENANTS[0]}/v2.0/.well-known/openid-configuration"
    document = requests.get(url, verify=str(entra.ca.ca_path), timeout=5).json()
    assert document["token_endpoint"] == f"{entra.origin}/{TENANTS[0]}/oauth2/v2.0/token"
    with requests.Session() as public_roots_only:
        public_roots_only.trust_env = False  # not REQUESTS_CA_BUNDLE: the system's roots
        with pytest.raises(requests.exceptions.SSLError):
            public_roots_only.get(url, timeout=5)
