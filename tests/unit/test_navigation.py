"""The navigation graph snapshot (shared/contract/navigation.py) against the kit's graph-navigation.json.

The vendored copy is read; tests/layout/test_reference_copies.py checks it against the kit whenever the kit
is beside the repository, and says so when it skips.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from producer.routes_doc import ABSTRACT_OWNERS
from shared.contract import navigation as nav
from tests.support.reference import graph_navigation, graph_schema
from tests.support.routes import TRIPLES


@pytest.fixture
def reference() -> dict[str, Any]:
    return graph_navigation()


def test_every_owner_navigation_pair_matches_the_reference(reference: dict[str, Any]):
    ours = {
        (hop.owner, hop.declared_on, hop.navigation, hop.declared_type, hop.owner in ABSTRACT_OWNERS,
         hop.profile_types)
        for hop in nav.HOPS
    }  # fmt: skip
    theirs = {
        (row["owner"], row["declaredOn"], row["navigation"], row["declaredType"], row["ownerAbstract"],
         tuple(row["validProfileTypes"]))
        for row in reference["navigations"]
    }  # fmt: skip
    assert ours == theirs
    assert len(nav.HOPS) == len(reference["navigations"])


def test_the_triples_and_counts_match_the_reference(reference: dict[str, Any]):
    assert {tuple(triple) for triple in reference["triples"]} == TRIPLES
    counts = reference["counts"]
    assert (len(nav.PROFILE_TYPES), len(nav.DECLARATIONS), len(nav.HOPS), len(TRIPLES)) == (
        counts["profileTypes"], counts["navigationDeclarations"], counts["pairs"], counts["triples"],
    )  # fmt: skip
    per_navigation = {n: {"pairs": len(nav.NAVIGATION_OWNERS[n]),
                          "declaringTypes": sum(d[1] == n for d in nav.DECLARATIONS),
                          "triples": sum(t[1] == n for t in TRIPLES)} for n in nav.NAVIGATIONS}  # fmt: skip
    assert per_navigation == counts["perNavigation"]


def test_the_profile_types_and_their_bases_match_the_reference(reference: dict[str, Any]):
    above_profiles = {"deviceConfiguration", "entity"}
    theirs = {
        profile: tuple(base for base in spec["baseChain"] if base not in above_profiles)
        for profile, spec in reference["profileTypes"].items()
    }
    assert theirs == nav.PROFILE_BASES


def test_device_configuration_itself_has_no_certificate_navigation(reference: dict[str, Any]):
    assert reference["checks"]["deviceConfigurationHasCertificateNavigation"] is False
    assert "deviceConfiguration" not in nav.OWNER_NAVIGATIONS


def test_the_snapshot_has_the_issue_s_counts():
    """What issue 10 states, in its own numbers."""
    assert len(nav.NAVIGATIONS) == 6
    assert len(nav.HOPS) == 35
    assert sum(hop.declared_on != hop.owner for hop in nav.HOPS) == 5
    assert len(TRIPLES) == 93
    assert Counter(triple[1] for triple in TRIPLES)["identityCertificate"] == 41
    assert nav.VIA_PROFILE_TYPES["windowsPhone81VpnConfiguration/identityCertificate"] == {
        "windowsPhone81SCEPCertificateProfile"
    }


def test_the_profile_types_are_those_with_managed_device_certificate_states():
    assert list(nav.PROFILE_TYPES) == graph_schema()["navigationParents"]
