"""Samples of the navigation graph's routes for the tests of several tiers."""

from __future__ import annotations

from shared.contract import navigation as nav

TRIPLES = frozenset((hop.owner, hop.navigation, profile) for hop in nav.HOPS for profile in hop.profile_types)
"""Every valid (owner type, navigation, profile type) of the navigation graph."""


def forbidden_triples() -> list[tuple[str, str, str, str]]:
    """(owner, navigation, profile type, field at fault): for each owner type, a profile type outside its first
    navigation's type (`profileType`), and a navigation it lacks (`via`)."""
    samples = []
    for owner, navigations in nav.OWNER_NAVIGATIONS.items():
        hop = nav.VIA_HOPS[f"{owner}/{navigations[0]}"]
        outside = next(p for p in nav.PROFILE_TYPES if p not in hop.profile_types)
        lacking = next(n for n in nav.NAVIGATIONS if n not in navigations)
        samples += [(owner, hop.navigation, outside, "profileType"), (owner, lacking, hop.profile_types[0], "via")]
    return samples
