"""The Graph simulator answers like Graph: routes, errors, headers, auth, the write limit and faults."""

from __future__ import annotations

import email.utils
import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from devstack import graph_simulator
from devstack.graph_simulator import GraphSimulator
from devstack.identity_emulator import IdentityEmulator, TokenClaims

KEY = bytes(range(32))
APP = "0b1e55ed-0000-4000-8000-000000000001"
OTHER_APP = "0b1e55ed-0000-4000-8000-000000000002"
REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = "/deviceManagement/deviceConfigurations"
MDCS = "managedDeviceCertificateStates"

IOS_CONFIG, IOS_STATE = "b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11", "d99bc884-c884-d99b-84c8-9bd984c89bd9"
VPN = "0a0e0000-0000-4000-8000-000000000001"


def route(config_id: str, casts: str, state_id: str) -> str:
    return f"{CONFIGS}/{config_id}/{casts}/{MDCS}/{state_id}"


IOS = route(IOS_CONFIG, "microsoft.graph.iosScepCertificateProfile", IOS_STATE)
SEED_ROUTES = [  # the seed page's seven PATCH routes with the ids graph_seed.json documents
    IOS,
    route(
        "c0ffee00-0000-4000-8000-000000000019",
        "microsoft.graph.macOSScepCertificateProfile",
        "57a7e000-0019-4000-8000-000000000001",
    ),
    route(
        "c0ffee00-0000-4000-8000-000000000009",
        "microsoft.graph.androidScepCertificateProfile",
        "57a7e000-0009-4000-8000-000000000001",
    ),
    route(
        "c0ffee00-0000-4000-8000-000000000022",
        "microsoft.graph.windows81SCEPCertificateProfile",
        "57a7e000-0022-4000-8000-000000000001",
    ),
    route(
        "c0ffee00-0000-4000-8000-000000000011",
        "microsoft.graph.androidWorkProfileScepCertificateProfile",
        "57a7e000-0011-4000-8000-000000000001",
    ),
    route(
        VPN,
        "identityCertificate/microsoft.graph.androidForWorkScepCertificateProfile",
        "57a7e000-0006-4000-8000-000000000001",
    ),
    route(
        "0a0e0000-0000-4000-8000-000000000002",
        "microsoft.graph.windowsPhone81VpnConfiguration/identityCertificate/"
        "microsoft.graph.windowsPhone81SCEPCertificateProfile",
        "57a7e000-0024-4000-8000-000000000001",
    ),
]
STAMP = "2027-01-01T00:02:14.9489247-08:00"


@pytest.fixture
def sim() -> Iterator[GraphSimulator]:
    with GraphSimulator(KEY) as running:
        yield running


def token(sim: GraphSimulator, appid: str = APP, **kwargs: Any) -> str:
    return TokenClaims.issue(sim.origin, appid, **kwargs).sign(KEY)


def call(
    sim: GraphSimulator,
    method: str,
    path: str = IOS,
    body: Any = None,
    *,
    appid: str = APP,
    auth: str | None = None,
    headers: dict[str, str] | None = None,
    data: str | None = None,
    allow_redirects: bool = True,
) -> requests.Response:
    """One request under base_url with a fresh token of `appid` unless `auth` gives the header."""
    sent = {"Authorization": auth if auth is not None else f"Bearer {token(sim, appid)}", **(headers or {})}
    json_body = body if data is None else None
    return requests.request(method, sim.base_url + path, json=json_body, data=data, headers=sent, timeout=5,
                            allow_redirects=allow_redirects)  # fmt: skip


def patch(sim: GraphSimulator, body: Any = None, path: str = IOS, **kwargs: Any) -> requests.Response:
    return call(sim, "PATCH", path, {"certificateKeyUsage": "digitalSignature"} if body is None else body, **kwargs)


def assert_graph_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    assert inner["client-request-id"] == response.headers["client-request-id"]
    assert time.strptime(inner["date"], "%Y-%m-%dT%H:%M:%S")
    return dict(error)


def retry_at(response: requests.Response, mono: float, wall: float) -> float:
    """The monotonic instant from which Retry-After allows a retry, counted from (mono, wall), one moment."""
    value = response.headers["Retry-After"]
    try:
        return mono + float(value)
    except ValueError:
        return mono + email.utils.parsedate_to_datetime(value).timestamp() - wall


def sleep_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.monotonic()))


# ---- routes and the store ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", SEED_ROUTES, ids=[p.split("/")[-3].removeprefix("microsoft.graph.") for p in SEED_ROUTES]
)
def test_seed_routes_patch_and_get(sim: GraphSimulator, path: str) -> None:
    before = call(sim, "GET", path).json()
    response = patch(sim, {"certificateKeyUsage": "keyEncipherment", "userDisplayName": "Jo Doe"}, path)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["@odata.type"] == "#microsoft.graph.managedDeviceCertificateState"
    assert updated["@odata.context"].endswith(f"/{MDCS}/$entity")
    assert updated["id"] == path.rsplit("/", 1)[1]
    assert updated == {**before, "certificateKeyUsage": "keyEncipherment", "userDisplayName": "Jo Doe"}
    assert call(sim, "GET", path).json() == updated


def test_every_profile_type_and_an_abstract_owner_cast_resolve(sim: GraphSimulator) -> None:
    configs = sim.store()["deviceConfigurations"]
    profiles = {
        c["@odata.type"].removeprefix("#microsoft.graph."): c for c in configs if c["managedDeviceCertificateStates"]
    }
    assert set(profiles) == graph_simulator.PROFILE_TYPES
    for profile_type, config in profiles.items():
        for state in config["managedDeviceCertificateStates"]:
            path = f"{CONFIGS}/{config['id']}/microsoft.graph.{profile_type}/{MDCS}/{state['id']}"
            assert call(sim, "GET", path).status_code == 200, path
    path = route(
        "0a0e0000-0000-4000-8000-000000000003",  # an androidForWorkGmailEasConfiguration
        "microsoft.graph.androidForWorkEasEmailProfileBase/identityCertificate/"
        "microsoft.graph.androidForWorkPkcsCertificateProfile",
        "57a7e000-0005-4000-8000-000000000002",
    )
    assert patch(sim, path=path).status_code == 200


@pytest.mark.parametrize(
    ("path", "segment"),
    [
        ("/deviceManagement/deviceConfigurationz/x", "deviceConfigurationz"),
        (IOS.replace("iosScepCertificateProfile", "notAType"), "microsoft.graph.notAType"),
        (IOS.replace(MDCS, "deviceStatuses"), "deviceStatuses"),
        (f"{IOS}/extra", "extra"),
        (route(VPN, "microsoft.graph.androidForWorkVpnConfiguration/assignments/"
               "microsoft.graph.androidForWorkScepCertificateProfile", IOS_STATE), "assignments"),
        (route(VPN, "microsoft.graph.iosWiFiConfiguration/identityCertificate/"
               "microsoft.graph.iosScepCertificateProfile", IOS_STATE), "microsoft.graph.iosWiFiConfiguration"),
        (SEED_ROUTES[6].replace(MDCS, f"{MDCS}\n"), f"{MDCS}\n"),
    ],
    ids=["typo", "unknown-cast", "wrong-navigation", "trailing", "not-a-certificate-navigation", "unknown-owner",
         "newline"],
)  # fmt: skip
def test_unknown_segments_are_400(sim: GraphSimulator, path: str, segment: str) -> None:
    error = assert_graph_error(patch(sim, path=path), 400, "BadRequest")
    assert error["message"] == f"Resource not found for the segment '{segment}'."


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (route(IOS_CONFIG, "microsoft.graph.iosScepCertificateProfile/identityCertificate/"
               "microsoft.graph.iosScepCertificateProfile", IOS_STATE), "cast/navigation/cast"),
        (IOS.replace("/microsoft.graph.iosScep", "/microsoft.graph.iosVpnConfiguration/microsoft.graph.iosScep"),
         "cast/cast"),
        (SEED_ROUTES[6].replace("windowsPhone81SCEPCertificateProfile", "iosScepCertificateProfile"),
         "cast/navigation/cast"),  # the cast the issue found being sent: windowsPhone81's base admits no iOS type
        (SEED_ROUTES[6].replace("windowsPhone81VpnConfiguration", "iosVpnConfiguration"), "cast/navigation/cast"),
        (SEED_ROUTES[6].replace("/identityCertificate/", "/smimeSigningCertificate/"), "cast/navigation/cast"),
        (SEED_ROUTES[5].replace("androidForWorkScepCertificateProfile", "aospDeviceOwnerScepCertificateProfile"),
         "navigation/cast"),  # no owner's identityCertificate reaches an AOSP profile
        (SEED_ROUTES[5].replace("identityCertificate/", "identityCertificateForClientAuthentication/"),
         "navigation/cast"),  # only the seed page's hop is served without an owner cast
        (route(VPN, "microsoft.graph.androidForWorkVpnConfiguration", IOS_STATE), "cast"),
    ],
    ids=["profile-as-owner", "owner-without-hop", "forbidden-cast", "cast-after-another-owner", "missing-navigation",
         "seed-hop-forbidden-cast", "owner-less-other-navigation", "owner-as-profile"],
)  # fmt: skip
def test_a_route_the_navigation_graph_forbids_is_400_no_odata_route(sim: GraphSimulator, path: str, template: str):
    before = sim.store()
    for method in ("PATCH", "GET"):
        error = assert_graph_error(
            call(sim, method, path, {"certificateIssuer": "x"}), 400, graph_simulator.NO_ROUTE_CODE
        )
        assert error["message"].startswith(
            f"No OData route exists that match template ~/singleton/navigation/key/{template}/navigation/key "
            f"with http verb {method} for request "
        )
    assert sim.store() == before


def test_an_encoded_control_character_in_an_id_reaches_the_log(sim: GraphSimulator) -> None:
    path = IOS.replace(IOS_STATE, f"{IOS_STATE}%0A")
    assert_graph_error(patch(sim, path=path), 404, "ResourceNotFound")
    (logged,) = sim.requests()
    assert logged["path"] == "/beta" + path


def test_paths_outside_beta_are_400(sim: GraphSimulator) -> None:
    response = requests.get(
        f"{sim.origin}/v1.0/deviceManagement", headers={"Authorization": f"Bearer {token(sim)}"}, timeout=5
    )
    assert assert_graph_error(response, 400, "BadRequest")["message"] == "Resource not found for the segment 'v1.0'."


def test_a_cast_to_an_owner_matches_its_subtypes() -> None:
    instances = graph_simulator.OWNER_INSTANCE_TYPES
    assert instances["androidForWorkEasEmailProfileBase"] == {
        "androidForWorkEasEmailProfileBase", "androidForWorkGmailEasConfiguration",
        "androidForWorkNineWorkEasConfiguration",
    }  # fmt: skip
    assert instances["iosVpnConfiguration"] == {"iosVpnConfiguration", "iosikEv2VpnConfiguration"}
    assert instances["windows10VpnConfiguration"] == {"windows10VpnConfiguration"}


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ({"identityCertificateId": "c0ffee00-0000-4000-8000-000000000016"}, "cannot be"),  # an iOS profile
        ({"smimeSigningCertificateId": "c0ffee00-0000-4000-8000-000000000024"}, "cannot be"),  # not its navigation
        ({"identityCertificateId": "no-such-profile"}, "cannot be"),
    ],
)
def test_a_seed_whose_references_the_navigation_graph_forbids_is_refused(reference: dict[str, str], problem: str):
    seed = json.loads(graph_simulator.DEFAULT_SEED_PATH.read_text(encoding="utf-8"))
    vpn = next(c for c in seed["deviceConfigurations"] if c["id"] == SEED_ROUTES[6].split("/")[3])
    vpn.pop("identityCertificateId")
    vpn.update(reference)
    with pytest.raises(ValueError, match=problem):
        GraphSimulator(KEY, seed=seed)


@pytest.mark.parametrize(
    "path",
    [
        IOS.replace(IOS_CONFIG, "00000000-0000-0000-0000-000000000000"),
        IOS.replace(IOS_STATE, "00000000-0000-0000-0000-000000000000"),
        IOS.replace(IOS_STATE, "57a7e000-0019-4000-8000-000000000001"),  # a macOS profile's state
        IOS.replace("iosScepCertificateProfile", "macOSScepCertificateProfile"),
        SEED_ROUTES[5].replace(
            "/identityCertificate/", "/microsoft.graph.androidForWorkEasEmailProfileBase/identityCertificate/"
        ),
        SEED_ROUTES[5].replace("androidForWorkScepCertificateProfile", "androidForWorkPkcsCertificateProfile"),
        SEED_ROUTES[5].replace(VPN, IOS_CONFIG),  # a certificate profile has no identityCertificate
    ],
    ids=["config", "state", "state-of-other-profile", "cast", "owner-cast", "via-cast", "no-identityCertificate"],
)
def test_unknown_ids_and_mismatched_casts_are_404(sim: GraphSimulator, path: str) -> None:
    assert_graph_error(patch(sim, path=path), 404, "ResourceNotFound")


def test_other_methods_are_405(sim: GraphSimulator) -> None:
    assert_graph_error(call(sim, "DELETE"), 405, "BadRequest")
    assert call(sim, "GET").status_code == 200


# ---- headers and authentication ------------------------------------------------------------------


def test_graph_headers_on_every_answer(sim: GraphSimulator) -> None:
    answers = [
        patch(sim, headers={"client-request-id": "c0ffee00-aaaa-4bbb-8ccc-000000000001"}),
        patch(sim),
        patch(sim, path=IOS.replace(IOS_STATE, "nope")),
        patch(sim, auth=""),
    ]
    assert [r.status_code for r in answers] == [200, 200, 404, 401]
    assert answers[0].headers["client-request-id"] == "c0ffee00-aaaa-4bbb-8ccc-000000000001"
    generated = [uuid.UUID(r.headers["client-request-id"]) for r in answers[1:]]
    assert len(set(generated)) == 3
    assert len({uuid.UUID(r.headers["request-id"]) for r in answers}) == 4
    for response in answers:
        sent = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
        assert abs(sent - time.time()) < 5
        assert "ServerInfo" in json.loads(response.headers["x-ms-ags-diagnostic"])
        assert response.headers["Content-Type"].split(";")[0] == "application/json"


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "Bearer ",
        "Bearer not-a-token",
        f"Bearer {TokenClaims.issue('http://127.0.0.1:1', APP).sign(KEY)}",
        f"Bearer {TokenClaims.issue('https://graph.microsoft.com', APP).sign(KEY)}",
        "Basic dXNlcjpwYXNz",
    ],
    ids=["none", "empty", "garbage", "other-port-audience", "graph-audience", "basic"],
)
def test_bad_tokens_are_401(sim: GraphSimulator, auth: str) -> None:
    response = patch(sim, auth=auth)
    assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert sim.stats()["writes"] == 0


def test_foreign_and_expired_tokens_are_401(sim: GraphSimulator) -> None:
    foreign = TokenClaims.issue(sim.origin, APP).sign(b"someone else's key")
    expired = token(sim, now=time.time() - 7200, lifetime_s=3600)
    for bad in (foreign, expired):
        assert_graph_error(patch(sim, auth=f"Bearer {bad}"), 401, "InvalidAuthenticationToken")
    assert call(sim, "GET").json()["certificateKeyUsage"] == "digitalSignature"  # seed value, not patched
    assert patch(sim, {"certificateKeyUsage": "keyEncipherment"}).status_code == 200


def test_revoked_tokens_are_401_until_a_fresh_one_comes(sim: GraphSimulator) -> None:
    older = token(sim, now=time.time() - 60)
    current = token(sim)
    sim.expire_tokens_issued_before(time.time() - 30)
    assert patch(sim, auth=f"Bearer {older}").status_code == 401
    assert patch(sim, auth=f"Bearer {current}").status_code == 200
    sim.revoke_all_tokens()
    assert patch(sim, auth=f"Bearer {current}").status_code == 401
    assert patch(sim).status_code == 200  # a token issued after the revocation


def test_real_credential_token_is_accepted_and_refreshed_after_a_401(monkeypatch: pytest.MonkeyPatch) -> None:
    client_id = "6e3c1f0a-8b2d-4c57-9a1e-3f5b7d9c2e41"
    with IdentityEmulator(signing_key=KEY) as identity, GraphSimulator(KEY) as sim:
        for name, value in identity.env().items():
            monkeypatch.setenv(name, value)
        with ManagedIdentityCredential(client_id=client_id) as credential:
            first = credential.get_token(f"{sim.origin}/.default").token
            assert patch(sim, auth=f"Bearer {first}").status_code == 200
            sim.revoke_all_tokens()
            assert patch(sim, auth=f"Bearer {credential.get_token(f'{sim.origin}/.default').token}").status_code == 401
            claims = json.dumps({"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}})
            fresh = credential.get_token(f"{sim.origin}/.default", claims=claims).token
            assert patch(sim, auth=f"Bearer {fresh}").status_code == 200
        assert identity.token_requests == 2
        assert sim.stats()["appIds"] == [client_id]
        assert sim.stats()["tokensSeen"] == 2


# ---- the PATCH body ------------------------------------------------------------------------------


def test_timestamps_are_stored_verbatim(sim: GraphSimulator) -> None:
    body = {
        "certificateExpirationDateTime": STAMP,
        "lastCertificateStateChangeDateTime": "2026-12-31T23:59:59.0000001Z",
    }
    answered = patch(sim, body).json()
    stored = next(
        s
        for c in sim.store()["deviceConfigurations"]
        for s in c["managedDeviceCertificateStates"]
        if s["id"] == IOS_STATE
    )
    for view in (answered, call(sim, "GET").json(), stored, sim.requests()[0]["body"]):
        assert {k: view[k] for k in body} == body


@pytest.mark.parametrize(
    ("body", "headers", "mentions"),
    [
        ([{"certificateKeyUsage": "digitalSignature"}], {}, "JSON"),
        ({"certificateKeyUsages": "digitalSignature"}, {}, "'certificateKeyUsages'"),
        ({"certificateKeyLength": None}, {}, "null"),
        ({"certificateKeyLength": 2**31}, {}, "certificateKeyLength"),
        ({"certificateKeyLength": "2048"}, {}, "certificateKeyLength"),
        ({"devicePlatform": "windowsMobileApplicationManagement"}, {}, "include-unknown-enum-members"),
        ({"devicePlatform": "unknownFutureValue"}, {"Prefer": "include-unknown-enum-members"}, "unknownFutureValue"),
        ({"certificateKeyUsage": "keyEncipherment,nonRepudiation"}, {}, "nonRepudiation"),
        ({"certificateExpirationDateTime": "2027-01-01T00:02:14"}, {}, "certificateExpirationDateTime"),
        ({"certificateExpirationDateTime": "2027-01-01T00:02:14.94892471Z"}, {}, "certificateExpirationDateTime"),
        ({"certificateExpirationDateTime": "2027-02-30T00:02:14Z"}, {}, "certificateExpirationDateTime"),
        ({"id": "57a7e000-0019-4000-8000-000000000001"}, {}, "key"),
    ],
    ids=[
        "array", "unknown-property", "null-non-nullable", "int32-range", "int32-string", "evolvable-member",
        "unknownFutureValue", "flags-member", "no-offset", "8-digits", "no-such-day", "other-id",
    ],
)  # fmt: skip
def test_invalid_bodies_are_400_and_change_nothing(
    sim: GraphSimulator, body: Any, headers: dict[str, str], mentions: str
) -> None:
    before = call(sim, "GET").json()
    error = assert_graph_error(patch(sim, body, headers=headers), 400, "BadRequest")
    assert mentions in error["message"]
    assert call(sim, "GET").json() == before


def test_malformed_json_is_400(sim: GraphSimulator) -> None:
    response = call(sim, "PATCH", data="{not json", headers={"Content-Type": "application/json"})
    assert "JSON" in assert_graph_error(response, 400, "BadRequest")["message"]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"devicePlatform": "windowsMobileApplicationManagement"}, {"Prefer": "include-unknown-enum-members"}),
        ({"certificateKeyUsage": "keyEncipherment,digitalSignature"}, {}),
        ({"certificateSubjectAlternativeNameFormat": "emailAddress,userPrincipalName"}, {}),
        ({"certificateIssuer": None, "certificateThumbprint": None}, {}),
        ({"serverUrl": "https://example.com/serverUrl/", "enhancedKeyUsage": "Enhanced Key Usage value"}, {}),
        ({"@odata.type": "#microsoft.graph.managedDeviceCertificateState", "id": IOS_STATE, "certificateErrorCode": -1},
         {}),
        ({"certificateValidityPeriodUnits": "months", "certificateSubjectNameFormat": "commonNameAsIMEI"}, {}),
    ],
    ids=["evolvable-with-prefer", "flags", "flags-san", "nullable-null", "legacy", "odata-type-and-id", "enums"],
)  # fmt: skip
def test_valid_bodies_are_stored_as_sent(sim: GraphSimulator, body: dict[str, Any], headers: dict[str, str]) -> None:
    response = patch(sim, body, headers=headers)
    assert response.status_code == 200, response.text
    expected = {k: v for k, v in body.items() if k != "@odata.type"}
    assert {k: response.json()[k] for k in expected} == expected
    assert {k: call(sim, "GET").json()[k] for k in expected} == expected


# ---- throttling ----------------------------------------------------------------------------------


def test_write_limit_is_per_app_and_answers_graphs_429() -> None:
    with GraphSimulator(KEY, write_limit=3, write_window_s=2.0) as sim:
        assert [patch(sim).status_code for _ in range(3)] == [200, 200, 200]
        throttled = patch(sim)
        error = assert_graph_error(throttled, 429, "TooManyRequests")
        assert (error["innerError"]["code"], error["innerError"]["status"]) == ("429", "429")
        assert 1 <= int(throttled.headers["Retry-After"]) <= 2
        assert patch(sim, appid=OTHER_APP).status_code == 200
        stats = sim.stats()
    assert (stats["writes"], stats["throttled"], stats["byStatus"]) == (4, 1, {"200": 4, "429": 1})
    assert stats["peakWindowWrites"] == 3


@pytest.mark.parametrize("form", ["seconds", "fractional", "http-date"])
def test_retry_after_is_accurate(form: graph_simulator.RetryAfterForm) -> None:
    window = 1.0
    with GraphSimulator(KEY, write_limit=2, write_window_s=window, retry_after_form=form) as sim:
        assert [patch(sim).status_code for _ in range(2)] == [200, 200]
        throttled = patch(sim)
        obeyed = retry_at(throttled, time.monotonic(), time.time())  # what a client does on receipt
        assert throttled.status_code == 429
        log = sim.requests()
        frees_at = log[0]["monotonic"] + window  # the first write leaves the window
        promised = retry_at(throttled, log[2]["monotonic"], log[2]["wallTime"])
        granularity = 0.001 if form == "fractional" else 1.0
        assert frees_at <= promised < frees_at + granularity + 0.01
        if form == "fractional":
            assert (
                throttled.headers["Retry-After"] == f"{math.ceil((frees_at - log[2]['monotonic']) * 1000) / 1000:.3f}"
            )

        sleep_until(frees_at - 0.3)
        early = patch(sim)
        assert early.status_code == 429
        arrived = sim.requests()[-1]
        assert frees_at <= retry_at(early, arrived["monotonic"], arrived["wallTime"]) < frees_at + granularity + 0.01
        assert sim.stats()["earlyRetries"] == 1

        sleep_until(obeyed)
        assert patch(sim).status_code == 200
        stats = sim.stats()
    assert (stats["writes"], stats["throttled"], stats["earlyRetries"]) == (3, 1, 1)
    assert [r["outcome"] for r in sim.requests()] == [None, None, "throttled", "early", None]


def test_a_grace_tells_requests_already_in_flight_from_a_client_ignoring_retry_after() -> None:
    grace, window = 0.4, 3.0
    with GraphSimulator(KEY, write_limit=1, write_window_s=window, in_flight_grace_s=grace) as sim:
        assert patch(sim).status_code == 200
        assert patch(sim).status_code == 429  # sets a Retry-After of about `window`
        issued = sim.requests()[-1]["monotonic"]
        raced = patch(sim)  # as a request sent before its sender saw the 429
        sleep_until(issued + grace + 0.1)
        ignored = patch(sim)  # a sender that saw the 429 and went anyway
        stats = sim.stats()
    assert (raced.status_code, ignored.status_code) == (429, 429)
    assert float(raced.headers["Retry-After"]) >= float(ignored.headers["Retry-After"]) >= 1  # the time left
    assert [r["outcome"] for r in sim.requests()] == [None, "throttled", "inFlight", "early"]
    assert (stats["inFlight"], stats["earlyRetries"], stats["writes"]) == (1, 1, 1)


def test_without_retry_after_429s_are_not_early_and_do_not_count_as_writes() -> None:
    window = 1.0
    with GraphSimulator(KEY, write_limit=2, write_window_s=window, retry_after_form="none") as sim:
        assert [patch(sim).status_code for _ in range(2)] == [200, 200]
        hammered = [patch(sim) for _ in range(5)]
        assert [r.status_code for r in hammered] == [429] * 5
        assert all("Retry-After" not in r.headers for r in hammered)
        sleep_until(sim.requests()[0]["monotonic"] + window + 0.01)
        assert patch(sim).status_code == 200  # the 429s took no slot
        stats = sim.stats()
    assert (stats["throttled"], stats["earlyRetries"], stats["writes"]) == (5, 0, 3)


# ---- faults --------------------------------------------------------------------------------------


def test_script_forces_answers_for_writes_only() -> None:
    script: list[dict[str, Any]] = [
        {"status": 503, "retryAfter": "0.2"},
        {"status": 500},
        {"drop": True},
        {"status": 404},
        {"status": 200},
    ]
    with GraphSimulator(KEY, script=script) as sim:
        assert call(sim, "GET").status_code == 200  # reads leave the script alone
        unavailable = patch(sim)
        assert_graph_error(unavailable, 503, "ServiceUnavailable")
        assert unavailable.headers["Retry-After"] == "0.2"
        assert patch(sim).status_code == 429  # too early: the script step waits
        time.sleep(0.25)
        assert_graph_error(patch(sim), 500, "InternalServerError")
        with pytest.raises(requests.ConnectionError):
            patch(sim, {"userDisplayName": "dropped"})
        assert_graph_error(patch(sim), 404, "ResourceNotFound")
        assert patch(sim, {"userDisplayName": "scripted 200"}).json()["userDisplayName"] == "scripted 200"
        assert patch(sim).status_code == 200
        stats = sim.stats()
        assert call(sim, "GET").json()["userDisplayName"] == "scripted 200"
    assert (stats["faultsInjected"], stats["dropped"], stats["earlyRetries"], stats["writes"]) == (4, 1, 1, 3)
    assert [r["status"] for r in sim.requests()][:8] == [200, 503, 429, 500, None, 404, 200, 200]


def test_script_sends_retry_after_verbatim_and_a_past_date_sets_no_wait(sim: GraphSimulator) -> None:
    past = "Wed, 21 Oct 2026 07:28:00 GMT"
    script = [{"status": 429, "retryAfter": past}]
    response = requests.post(f"{sim.origin}/_admin/faults", json={"script": script}, timeout=5)
    assert response.status_code == 200
    throttled = patch(sim)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == past
    assert patch(sim).status_code == 200
    assert sim.stats()["earlyRetries"] == 0


@pytest.mark.parametrize("status", [202, 204])
def test_script_answers_an_undocumented_2xx_with_no_body_and_changes_nothing(sim: GraphSimulator, status: int) -> None:
    sim.configure(script=[{"status": status}])
    response = patch(sim, {"userDisplayName": "not applied"})
    assert (response.status_code, response.content) == (status, b"")
    assert call(sim, "GET").json()["userDisplayName"] != "not applied"


def test_script_redirects_a_write_without_applying_or_counting_it(sim: GraphSimulator) -> None:
    sim.configure(script=[{"status": 302}, {"status": 307, "location": "https://elsewhere.invalid/x"}])
    found = call(sim, "PATCH", IOS, {"userDisplayName": "not applied"}, allow_redirects=False)
    assert (found.status_code, found.headers["Location"]) == (302, f"{graph_simulator.REDIRECT_PREFIX}/beta{IOS}")
    assert patch(sim, allow_redirects=False).headers["Location"] == "https://elsewhere.invalid/x"
    assert call(sim, "GET").json()["userDisplayName"] != "not applied"
    assert (sim.stats()["writes"], sim.stats()["byStatus"]) == (0, {"200": 1, "302": 1, "307": 1})
    followed = requests.patch(sim.origin + found.headers["Location"], json={}, timeout=5,
                              headers={"Authorization": f"Bearer {token(sim)}"})  # fmt: skip
    assert followed.status_code == 400  # a client that follows it is answered like any unknown route ...
    assert sim.requests()[-1]["path"].startswith(graph_simulator.REDIRECT_PREFIX)  # ... and shows in the log


def test_script_pads_a_body_and_trickles_one(sim: GraphSimulator) -> None:
    sim.configure(script=[{"bodyBytes": 100_000}, {"status": 409, "trickleSeconds": 0.004}])
    padded = patch(sim, {"userDisplayName": "padded"})
    assert (padded.status_code, len(padded.content), padded.json()["userDisplayName"]) == (200, 100_000, "padded")
    started = time.monotonic()
    slow = patch(sim)
    assert time.monotonic() - started >= 0.004 * len(slow.content) * 0.8
    assert_graph_error(slow, 409, "Conflict")


def test_random_faults_are_deterministic_per_seed() -> None:
    def statuses(rng_seed: int) -> list[int]:
        with GraphSimulator(KEY, error_rate=0.5, error_statuses=[500, 502], rng_seed=rng_seed) as sim:
            return [patch(sim).status_code for _ in range(16)]

    first = statuses(7)
    assert first == statuses(7)
    assert set(first) == {200, 500, 502}


def test_random_503_carries_retry_after_in_the_configured_form(sim: GraphSimulator) -> None:
    sim.configure(error_rate=1.0, error_statuses=[503], error_retry_after_s=0.5, retry_after_form="fractional")
    unavailable = patch(sim)
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "0.500"
    assert patch(sim).status_code == 429
    assert sim.stats()["earlyRetries"] == 1


def test_drop_rate_closes_the_connection_and_applies_nothing(sim: GraphSimulator) -> None:
    sim.configure(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        patch(sim, {"userDisplayName": "never stored"})
    assert call(sim, "GET").json()["userDisplayName"] != "never stored"
    assert sim.stats()["dropped"] == 1
    assert sim.requests()[0]["status"] is None


def test_latency_delays_answers(sim: GraphSimulator) -> None:
    sim.configure(latency_ms=150)
    started = time.monotonic()
    assert call(sim, "GET").status_code == 200
    assert time.monotonic() - started >= 0.15


def test_bad_configuration_is_refused(sim: GraphSimulator) -> None:
    with pytest.raises(ValueError, match="error_rate"):
        sim.configure(error_rate=2)
    with pytest.raises(ValueError, match="script"):
        sim.configure(script=[{"status": 101}])
    with pytest.raises(ValueError, match="location"):
        sim.configure(script=[{"status": 503, "location": "/elsewhere"}])
    with pytest.raises(ValueError, match="trickleSeconds"):
        sim.configure(script=[{"trickleSeconds": 0}])
    with pytest.raises(ValueError, match="bodyBytes"):
        sim.configure(script=[{"bodyBytes": -1}])
    assert requests.post(f"{sim.origin}/_admin/faults", json={"errorRat": 0.1}, timeout=5).status_code == 400
    assert sim.config.error_rate == 0


# ---- inspection ----------------------------------------------------------------------------------


def test_request_log_keeps_what_tests_need_and_no_token(sim: GraphSimulator) -> None:
    secret = token(sim)
    patch(sim, {"userDisplayName": "Jo"}, auth=f"Bearer {secret}", headers={"client-request-id": "crid-1"})
    (record,) = sim.requests()
    assert secret not in json.dumps(record)
    assert "authorization" not in {h.lower() for h in record["headers"]}
    assert (record["method"], record["path"], record["clientRequestId"]) == ("PATCH", f"/beta{IOS}", "crid-1")
    assert (record["body"], record["status"], record["retryAfter"]) == ({"userDisplayName": "Jo"}, 200, None)
    assert record["appId"] == APP
    assert record["monotonic"] <= time.monotonic()
    assert abs(record["wallTime"] - time.time()) < 5


def test_admin_endpoints(sim: GraphSimulator) -> None:
    admin = f"{sim.origin}/_admin"
    patch(sim)
    assert requests.get(f"{admin}/stats", timeout=5).json() == sim.stats()
    assert len(requests.get(f"{admin}/requests", timeout=5).json()) == 1
    assert requests.get(f"{admin}/store", timeout=5).json() == sim.store()
    assert requests.post(f"{admin}/reset", timeout=5).json()["requests"] == 0
    assert sim.requests() == []

    config = {
        "id": "cfg",
        "@odata.type": "#microsoft.graph.iosPkcsCertificateProfile",
        "managedDeviceCertificateStates": [{"id": "s1"}],
    }
    assert requests.post(f"{admin}/seed", json={"deviceConfigurations": [config]}, timeout=5).status_code == 200
    assert patch(sim, path=f"{CONFIGS}/cfg/microsoft.graph.iosPkcsCertificateProfile/{MDCS}/s1").status_code == 200
    assert patch(sim).status_code == 404
    assert requests.post(f"{admin}/seed", timeout=5).status_code == 200  # back to graph_seed.json
    kept = token(sim)
    assert patch(sim, auth=f"Bearer {kept}").status_code == 200
    assert requests.post(f"{admin}/revoke-tokens", timeout=5).status_code == 200
    assert patch(sim, auth=f"Bearer {kept}").status_code == 401


def test_schema_tables_match_the_reference_schema() -> None:
    """The simulator keeps its own schema copy (independent of shared/); this catches drift from the reference."""
    reference = json.loads((REPO_ROOT / "tests/data/graph-schema.json").read_text(encoding="utf-8"))
    expected = {name: (p["type"].removeprefix("graph."), p["nullable"]) for name, p in reference["properties"].items()}
    own = {k: v for k, v in graph_simulator.PROPERTIES.items() if k not in ("serverUrl", "enhancedKeyUsage")}
    assert own == expected
    used = {kind for kind, _ in own.values() if not kind.startswith("Edm.")}
    reference_enums = {k: (tuple(reference["enums"][k]), reference["enumDetails"][k]["isFlags"]) for k in used}
    assert reference_enums == {k: graph_simulator._ENUMS[k] for k in used}
    assert set(reference["navigationParents"]) == graph_simulator.PROFILE_TYPES


def test_cli_serves_with_the_given_limit() -> None:
    command = [sys.executable, "-m", "devstack.graph_simulator", "--signing-key-hex", KEY.hex(), "--write-limit", "1"]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            name, _, base_url = process.stdout.readline().strip().partition("=")
            origin = base_url.removesuffix("/beta")
            auth = {"Authorization": f"Bearer {TokenClaims.issue(origin, APP).sign(KEY)}"}
            statuses = [
                requests.patch(base_url + IOS, json={"certificateKeyLength": 4096}, headers=auth, timeout=5).status_code
                for _ in range(2)
            ]
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0
    assert name == "GRAPH_BASE_URL"
    assert statuses == [200, 429]


TENANT_A, TENANT_B = "1111bbbb-0000-4000-8000-000000000002", "2222cccc-0000-4000-8000-000000000003"


def tenant_auth(sim: GraphSimulator, tid: str) -> str:
    return f"Bearer {TokenClaims.issue(sim.origin, APP, tid=tid).sign(KEY)}"


def test_each_added_tenant_has_its_own_store_and_the_token_chooses_it(sim: GraphSimulator):
    sim.add_tenant(TENANT_A)
    sim.add_tenant(TENANT_B)
    assert patch(sim, {"certificateIssuer": "CN=A"}, auth=tenant_auth(sim, TENANT_A)).status_code == 200
    assert "CN=A" in json.dumps(sim.store(TENANT_A))
    assert "CN=A" not in json.dumps(sim.store(TENANT_B))
    assert "CN=A" not in json.dumps(sim.store())
    assert [r["tenantId"] for r in sim.requests()] == [TENANT_A]


def test_the_write_limit_and_retry_after_are_per_tenant(sim: GraphSimulator):
    sim.add_tenant(TENANT_A, write_limit=1)
    sim.add_tenant(TENANT_B)
    assert patch(sim, auth=tenant_auth(sim, TENANT_A)).status_code == 200
    assert patch(sim, auth=tenant_auth(sim, TENANT_A)).status_code == 429  # A's one write is used ...
    assert patch(sim, auth=tenant_auth(sim, TENANT_B)).status_code == 200  # ... B's are not, nor held by A's 429
    stats = sim.stats()
    assert stats["byTenant"][TENANT_A]["throttled"] == 1
    assert stats["byTenant"][TENANT_B] == {"crossTenant": 0, "earlyRetries": 0, "inFlight": 0, "peakWindowWrites": 1,
                                           "requests": 1, "throttled": 0, "writes": 1}  # fmt: skip


def test_a_token_of_one_tenant_is_refused_on_another_tenants_objects(sim: GraphSimulator):
    only_b = {"deviceConfigurations": [{"id": "b-only", "@odata.type": "#microsoft.graph.iosScepCertificateProfile",
                                        "managedDeviceCertificateStates": [{"id": "s-1"}]}]}  # fmt: skip
    sim.add_tenant(TENANT_A)
    sim.add_tenant(TENANT_B, seed=only_b)
    path = route("b-only", "microsoft.graph.iosScepCertificateProfile", "s-1")
    assert patch(sim, path=path, auth=tenant_auth(sim, TENANT_B)).status_code == 200
    refused = patch(sim, path=path, auth=tenant_auth(sim, TENANT_A))
    assert_graph_error(refused, 403, "Forbidden")
    assert sim.stats()["crossTenant"] == 1
    assert patch(sim, path=route("nowhere", "microsoft.graph.iosScepCertificateProfile", "s-1"),
                 auth=tenant_auth(sim, TENANT_A)).status_code == 404  # fmt: skip
