"""Routes: the seed's seven PATCH paths byte for byte, every profile type, nothing else reachable."""

from __future__ import annotations

from typing import Any

import pytest

from shared.contract import graph_schema as gs
from shared.contract.errors import MessageRejected
from shared.contract.parsing import parse_message
from shared.graph.routes import build_request, route_path
from tests.support.reference import graph_schema, seed_patch_paths

SEED_ROUTES = [  # (profileType, via) of the seed's seven PATCH lines, in order
    ("iosScepCertificateProfile", None),
    ("macOSScepCertificateProfile", None),
    ("androidScepCertificateProfile", None),
    ("windows81SCEPCertificateProfile", None),
    ("androidWorkProfileScepCertificateProfile", None),
    ("androidForWorkScepCertificateProfile", "identityCertificate"),
    ("windowsPhone81SCEPCertificateProfile", "windowsPhone81VpnConfiguration/identityCertificate"),
]
BASE = "https://graph.microsoft.com/beta"


def message(profile_type: str, via: str | None = None, config: str = "c1", state: str = "s1"):
    document: dict[str, Any] = {
        "profileType": profile_type,
        "deviceConfigurationId": config,
        "managedDeviceCertificateStateId": state,
        "update": {"certificateIssuer": "x"},
    }
    if via is not None:
        document["via"] = via
    return document


def test_the_seed_has_seven_routes():
    assert len(seed_patch_paths()) == len(SEED_ROUTES) == 7


@pytest.mark.parametrize(("index", "route"), list(enumerate(SEED_ROUTES)))
def test_seed_paths_come_out_byte_for_byte(index: int, route: tuple[str, str | None]):
    profile_type, via = route
    expected = seed_patch_paths()[index]
    placeholder_safe = expected.replace("{deviceConfigurationId}", "CFG").replace(
        "{managedDeviceCertificateStateId}", "STATE"
    )
    parsed = parse_message(message(profile_type, via, config="CFG", state="STATE"))
    assert route_path(parsed) == placeholder_safe
    assert build_request(BASE, parsed).url == BASE + placeholder_safe


@pytest.mark.parametrize("profile_type", graph_schema()["navigationParents"])
def test_every_profile_type_has_its_direct_route(profile_type: str):
    parsed = parse_message(message(profile_type, config="c1", state="s1"))
    assert route_path(parsed) == (
        f"/deviceManagement/deviceConfigurations/c1/microsoft.graph.{profile_type}/managedDeviceCertificateStates/s1"
    )


@pytest.mark.parametrize("owner", gs.IDENTITY_CERTIFICATE_OWNERS)
def test_every_identity_certificate_owner_has_its_hop(owner: str):
    parsed = parse_message(message("iosScepCertificateProfile", f"{owner}/identityCertificate", config="c1"))
    assert route_path(parsed) == (
        f"/deviceManagement/deviceConfigurations/c1/microsoft.graph.{owner}/identityCertificate"
        "/microsoft.graph.iosScepCertificateProfile/managedDeviceCertificateStates/s1"
    )


def test_ids_with_colons_and_tildes_are_percent_encoded_where_needed():
    parsed = parse_message(message("iosScepCertificateProfile", config="a:b~c", state="x.y_z-1"))
    assert route_path(parsed).split("/")[3] == "a%3Ab~c"
    assert route_path(parsed).endswith("/managedDeviceCertificateStates/x.y_z-1")


@pytest.mark.parametrize(
    "bad_id",
    ["..", ".", "../admin", "a/b", "a?b=c", "a#b", "%2e%2e", "a b", "a\\b", "", "x" * 257, "a\nb", "é", "a%2Fb"],
)
@pytest.mark.parametrize("field", ["deviceConfigurationId", "managedDeviceCertificateStateId"])
def test_injection_attempts_are_rejected(bad_id: str, field: str):
    document = message("iosScepCertificateProfile")
    document[field] = bad_id
    with pytest.raises(MessageRejected) as caught:
        parse_message(document)
    assert caught.value.details[0].field == field
