"""Routes: the seed's seven and the current doc page's twenty-four PATCH paths byte for byte, every triple of the
navigation graph, nothing else reachable."""

from __future__ import annotations

from typing import Any

import pytest

from shared.contract import navigation as nav
from shared.contract.errors import MessageRejected
from shared.contract.parsing import parse_message
from shared.graph.routes import build_request, route_path
from tests.support.reference import doc_patch_paths, graph_schema, seed_patch_paths
from tests.support.routes import TRIPLES, forbidden_triples

SEED_ROUTES = [  # (profileType, via) of the seed's seven PATCH lines, in order
    ("iosScepCertificateProfile", None),
    ("macOSScepCertificateProfile", None),
    ("androidScepCertificateProfile", None),
    ("windows81SCEPCertificateProfile", None),
    ("androidWorkProfileScepCertificateProfile", None),
    ("androidForWorkScepCertificateProfile", "identityCertificate"),
    ("windowsPhone81SCEPCertificateProfile", "windowsPhone81VpnConfiguration/identityCertificate"),
]
WIFI_EAP = "windowsWifiEnterpriseEAPConfiguration/identityCertificateForClientAuthentication"
DOC_ROUTES = [  # (profileType, via) of the current doc page's twenty-four PATCH lines, in order
    *(
        (profile_type, None)
        for profile_type in (
            "iosPkcsCertificateProfile", "iosScepCertificateProfile", "macOSPkcsCertificateProfile",
            "macOSScepCertificateProfile", "androidPkcsCertificateProfile", "androidScepCertificateProfile",
            "iosImportedPFXCertificateProfile", "macOSImportedPFXCertificateProfile",
            "androidImportedPFXCertificateProfile", "androidForWorkPkcsCertificateProfile",
            "androidForWorkScepCertificateProfile", "windowsPhone81SCEPCertificateProfile",
            "aospDeviceOwnerPkcsCertificateProfile", "aospDeviceOwnerScepCertificateProfile",
            "androidDeviceOwnerPkcsCertificateProfile", "androidDeviceOwnerScepCertificateProfile",
            "androidWorkProfilePkcsCertificateProfile", "androidWorkProfileScepCertificateProfile",
            "androidForWorkImportedPFXCertificateProfile", "androidDeviceOwnerImportedPFXCertificateProfile",
        )
    ),
    ("windows10PkcsCertificateProfile", WIFI_EAP),
    ("windows81SCEPCertificateProfile", WIFI_EAP),
    ("windows10ImportedPFXCertificateProfile", WIFI_EAP),
    ("windowsPhone81ImportedPFXCertificateProfile", WIFI_EAP),
]  # fmt: skip
BASE = "https://graph.microsoft.com/beta"
PREFIX = "/deviceManagement/deviceConfigurations/c1"
SUFFIX = "managedDeviceCertificateStates/s1"


def message(profile_type: str, via: str | None = None, config: str = "c1", state: str = "s1") -> dict[str, Any]:
    document: dict[str, Any] = {
        "profileType": profile_type,
        "deviceConfigurationId": config,
        "managedDeviceCertificateStateId": state,
        "update": {"certificateIssuer": "x"},
    }
    if via is not None:
        document["via"] = via
    return document


def placeholder_path(profile_type: str, via: str | None) -> str:
    """The route of (profileType, via) with the doc pages' placeholders for the ids."""
    parsed = parse_message(message(profile_type, via, config="CFG", state="STATE"))
    assert build_request(BASE, parsed).url == BASE + route_path(parsed)
    return (
        route_path(parsed)
        .replace("CFG", "{deviceConfigurationId}")
        .replace("STATE", "{managedDeviceCertificateStateId}")
    )


def test_the_pages_have_seven_and_twenty_four_routes():
    assert len(seed_patch_paths()) == len(SEED_ROUTES) == 7
    assert len(doc_patch_paths()) == len(DOC_ROUTES) == 24


@pytest.mark.parametrize(("index", "route"), list(enumerate(SEED_ROUTES)))
def test_seed_paths_come_out_byte_for_byte(index: int, route: tuple[str, str | None]):
    assert placeholder_path(*route) == seed_patch_paths()[index]


@pytest.mark.parametrize(("index", "route"), list(enumerate(DOC_ROUTES)))
def test_doc_paths_come_out_byte_for_byte(index: int, route: tuple[str, str | None]):
    assert placeholder_path(*route) == doc_patch_paths()[index]


@pytest.mark.parametrize("profile_type", graph_schema()["navigationParents"])
def test_every_profile_type_has_its_direct_route(profile_type: str):
    parsed = parse_message(message(profile_type))
    assert route_path(parsed) == f"{PREFIX}/microsoft.graph.{profile_type}/{SUFFIX}"


@pytest.mark.parametrize(("owner", "navigation", "profile_type"), sorted(TRIPLES))
def test_every_triple_of_the_navigation_graph_has_its_route(owner: str, navigation: str, profile_type: str):
    parsed = parse_message(message(profile_type, f"{owner}/{navigation}"))
    assert route_path(parsed) == (
        f"{PREFIX}/microsoft.graph.{owner}/{navigation}/microsoft.graph.{profile_type}/{SUFFIX}"
    )
    assert parsed.warnings == []


@pytest.mark.parametrize(("owner", "navigation", "profile_type", "field"), forbidden_triples())
def test_a_forbidden_triple_is_rejected_naming_the_field_and_what_is_allowed(
    owner: str, navigation: str, profile_type: str, field: str
):
    with pytest.raises(MessageRejected) as caught:
        parse_message(message(profile_type, f"{owner}/{navigation}"))
    (detail,) = caught.value.details
    assert detail.field == field
    allowed = nav.OWNER_NAVIGATIONS[owner] if field == "via" else nav.VIA_HOPS[f"{owner}/{navigation}"].profile_types
    assert detail.message.endswith(": " + ", ".join(allowed))


def test_the_counts_of_the_issue():
    assert len(sorted(TRIPLES)) == 93
    assert len(forbidden_triples()) == 2 * 30


@pytest.mark.parametrize("profile_type", sorted(nav.SEED_HOP_OWNERS))
def test_the_seed_hop_is_sent_as_written_with_a_warning_naming_the_owner_casts(profile_type: str):
    parsed = parse_message(message(profile_type, "identityCertificate"))
    assert route_path(parsed) == f"{PREFIX}/identityCertificate/microsoft.graph.{profile_type}/{SUFFIX}"
    (warning,) = parsed.warnings
    owners = sorted(o for o, n, p in TRIPLES if n == "identityCertificate" and p == profile_type)
    assert warning.endswith("Use '<ownerType>/identityCertificate' with the configuration's type instead, one of: "
                            + ", ".join(owners))  # fmt: skip


def test_the_seed_hop_needs_a_profile_type_some_identity_certificate_reaches():
    with pytest.raises(MessageRejected) as caught:
        parse_message(message("aospDeviceOwnerScepCertificateProfile", "identityCertificate"))
    assert caught.value.details[0].field == "profileType"


@pytest.mark.parametrize(
    ("via", "phrase"),
    [
        ("identityCertificateForClientAuthentication", "needs an owner cast"),
        ("iosWiFiConfiguration/identityCertificate", "ownerType must be one of: androidDeviceOwnerVpnConfiguration"),
        ("windows10VpnConfiguration/notACertificate", "navigation one of: identityCertificate"),
        ("windows10VpnConfiguration/identityCertificate/extra", "navigation one of"),
        ("/identityCertificate", "ownerType must be one of"),
        ("identityCertificate/", "navigation one of"),
        ("windows10VpnConfiguration/identityCertificate\n", "navigation one of"),
        ("WINDOWS10VpnConfiguration/identityCertificate", "ownerType must be one of"),
    ],
)
def test_a_malformed_via_is_rejected_naming_what_it_may_be(via: str, phrase: str):
    with pytest.raises(MessageRejected) as caught:
        parse_message(message("windows10PkcsCertificateProfile", via))
    (detail,) = caught.value.details
    assert (detail.field, phrase in detail.message) == ("via", True), detail.message


def test_ids_with_colons_and_tildes_are_percent_encoded_where_needed():
    parsed = parse_message(message("iosScepCertificateProfile", config="a:b~c", state="x.y_z-1"))
    assert route_path(parsed).split("/")[3] == "a%3Ab~c"
    assert route_path(parsed).endswith("/managedDeviceCertificateStates/x.y_z-1")


@pytest.mark.parametrize(
    "bad_id",
    ["..", ".", "../admin", "a/b", "a?b=c", "a#b", "%2e%2e", "a b", "a\\b", "", "x" * 257, "a\nb", "é", "a%2Fb",
     "a\n", "٣"],
)  # fmt: skip
@pytest.mark.parametrize("field", ["deviceConfigurationId", "managedDeviceCertificateStateId"])
def test_injection_attempts_are_rejected(bad_id: str, field: str):
    document = message("iosScepCertificateProfile")
    document[field] = bad_id
    with pytest.raises(MessageRejected) as caught:
        parse_message(document)
    assert caught.value.details[0].field == field
