"""The managed-identity emulator speaks App Service's protocol well enough for the real azure-identity."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from devstack.identity_emulator import SYSTEM_ASSIGNED_CLIENT_ID, IdentityEmulator, TokenClaims, verify_token

KEY = bytes(range(32))
AUDIENCE = "http://127.0.0.1:1234"
USER_ASSIGNED = "6e3c1f0a-8b2d-4c57-9a1e-3f5b7d9c2e41"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def emulator() -> Iterator[IdentityEmulator]:
    with IdentityEmulator(signing_key=KEY) as running:
        yield running


@pytest.fixture
def mi_env(emulator: IdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> IdentityEmulator:
    """The environment of an App Service host whose identity endpoint is the emulator."""
    for name in ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    return emulator


def get_token(emulator: IdentityEmulator, headers: dict[str, str] | None = None, **params: str) -> requests.Response:
    query = {"api-version": "2019-08-01", "resource": AUDIENCE, **params}
    sent = {"X-IDENTITY-HEADER": emulator.header} if headers is None else headers
    return requests.get(emulator.endpoint, params=query, headers=sent, timeout=5)


@pytest.mark.parametrize("lifetime", [3600, 120])
def test_system_assigned_token_response(lifetime: int) -> None:
    with IdentityEmulator(signing_key=KEY, token_lifetime_s=lifetime) as emulator:
        before = int(time.time())
        response = get_token(emulator)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str)
    assert before + lifetime <= int(body["expires_on"]) <= int(time.time()) + lifetime
    assert (body["resource"], body["token_type"], body["client_id"]) == (AUDIENCE, "Bearer", SYSTEM_ASSIGNED_CLIENT_ID)
    claims = verify_token(body["access_token"], KEY, AUDIENCE)
    assert claims is not None
    assert (claims.appid, claims.exp) == (SYSTEM_ASSIGNED_CLIENT_ID, int(body["expires_on"]))
    assert body["access_token"].startswith("certstate-mi.")
    assert "eyJ" not in body["access_token"]  # nothing JWT-like for secret scanners to flag


def test_user_assigned_client_id_becomes_the_appid(emulator: IdentityEmulator) -> None:
    body = get_token(emulator, client_id=USER_ASSIGNED).json()
    assert body["client_id"] == USER_ASSIGNED
    claims = verify_token(body["access_token"], KEY, AUDIENCE)
    assert claims is not None
    assert claims.appid == USER_ASSIGNED


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 400),
        ({"X-IDENTITY-HEADER": "not-the-secret"}, {}, 401),
        (None, {"api-version": "2017-09-01"}, 400),
        (None, {"resource": ""}, 400),
        (None, {"client_id": USER_ASSIGNED, "object_id": USER_ASSIGNED}, 400),
    ],
    ids=["missing-header", "wrong-header", "old-api-version", "no-resource", "two-selectors"],
)
def test_refusals_like_app_service(
    emulator: IdentityEmulator, headers: dict[str, str] | None, params: dict[str, str], status: int
) -> None:
    response = get_token(emulator, headers, **params)
    assert response.status_code == status
    body = response.json()
    assert body["statusCode"] == status
    assert body["message"]
    assert (emulator.token_requests, emulator.tokens_issued) == (1, 0)


def test_fault_injection(emulator: IdentityEmulator) -> None:
    emulator.fail_next(2, status=503)
    assert [get_token(emulator).status_code for _ in range(3)] == [503, 503, 200]
    emulator.set_failing(True)
    failed = get_token(emulator)
    assert failed.status_code == 500
    assert failed.json()["statusCode"] == 500
    emulator.set_failing(False)
    assert get_token(emulator).status_code == 200
    assert (emulator.token_requests, emulator.tokens_issued) == (5, 2)


def test_verify_token_rejects_anything_not_exactly_ours() -> None:
    now = time.time()
    token = TokenClaims.issue(AUDIENCE, USER_ASSIGNED, lifetime_s=600, now=now).sign(KEY)
    prefix, payload, mac = token.split(".")
    tampered = TokenClaims.issue(AUDIENCE, "someone-else", lifetime_s=600, now=now).sign(KEY).split(".")[1]
    assert verify_token(token, KEY, AUDIENCE, now=now) is not None
    assert verify_token(token, KEY, AUDIENCE + "/", now=now) is not None  # Entra ignores a trailing slash
    rejected = {
        "other key": verify_token(token, b"another key", AUDIENCE, now=now),
        "other audience": verify_token(token, KEY, "https://graph.microsoft.com", now=now),
        "expired": verify_token(token, KEY, AUDIENCE, now=now + 601),
        "payload swapped": verify_token(f"{prefix}.{tampered}.{mac}", KEY, AUDIENCE, now=now),
        "mac cut": verify_token(f"{prefix}.{payload}.{mac[:-1]}", KEY, AUDIENCE, now=now),
        "other prefix": verify_token(f"x{token}", KEY, AUDIENCE, now=now),
        "garbage": verify_token("certstate-mi.!!!.00", KEY, AUDIENCE, now=now),
        "empty": verify_token("", KEY, AUDIENCE, now=now),
    }
    assert {name: claims for name, claims in rejected.items() if claims is not None} == {}


def test_managed_identity_credential_gets_a_user_assigned_token(mi_env: IdentityEmulator) -> None:
    with ManagedIdentityCredential(client_id=USER_ASSIGNED) as credential:
        first = credential.get_token(f"{AUDIENCE}/.default")
        second = credential.get_token(f"{AUDIENCE}/.default")
    claims = verify_token(first.token, KEY, AUDIENCE)
    assert claims is not None
    assert claims.appid == USER_ASSIGNED
    assert first.expires_on == claims.exp
    assert second.token == first.token  # served from the credential's cache
    assert mi_env.token_requests == 1


def test_managed_identity_credential_retries_a_500(mi_env: IdentityEmulator) -> None:
    mi_env.fail_next(1)
    with ManagedIdentityCredential() as credential:
        token = credential.get_token(f"{AUDIENCE}/.default")
    claims = verify_token(token.token, KEY, AUDIENCE)
    assert claims is not None
    assert claims.appid == SYSTEM_ASSIGNED_CLIENT_ID
    assert (mi_env.token_requests, mi_env.tokens_issued) == (2, 1)


def test_managed_identity_credential_fails_on_a_wrong_header(
    mi_env: IdentityEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    with ManagedIdentityCredential() as credential, pytest.raises(ClientAuthenticationError, match="401"):
        credential.get_token(f"{AUDIENCE}/.default")
    assert mi_env.tokens_issued == 0


def test_a_taken_port_fails_start_loudly(emulator: IdentityEmulator) -> None:
    taken = int(emulator.endpoint.split(":")[2].split("/")[0])
    with pytest.raises(OSError, match="address already in use"):
        IdentityEmulator(port=taken).start()


def test_cli_prints_the_environment_and_serves() -> None:
    command = [sys.executable, "-m", "devstack.identity_emulator", "--signing-key-hex", KEY.hex()]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(2))
            response = requests.get(
                lines["IDENTITY_ENDPOINT"],
                params={"api-version": "2019-08-01", "resource": AUDIENCE},
                headers={"X-IDENTITY-HEADER": lines["IDENTITY_HEADER"]},
                timeout=5,
            )
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0
    assert lines["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
    assert verify_token(response.json()["access_token"], KEY, AUDIENCE) is not None
