"""Graph beta's certificate navigations: which owner casts reach which profile types (docs/routes.md).

A snapshot of the team's `reference/graph-navigation.json` (computed from the beta metadata and SDK
models; tests/unit/test_navigation.py keeps this equal to it whenever it is present), reduced to what
routing needs. A navigation's declared type is a certificate profile base; the valid casts after it
are the profile types that derive from that base. Everything else (the message model's `via` rule,
the JSON Schema, the routes, the simulator's routing, docs/routes.md) is derived from here, so the
lookups below are built once at import and every check per message is a dict or set lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NAVIGATIONS: Final = (
    "identityCertificate",
    "identityCertificateForClientAuthentication",
    "secondaryIdentityCertificateForClientAuthentication",
    "smimeSigningCertificate",
    "smimeEncryptionCertificate",
    "singleSignOnExtensionPkinitCertificate",
)
"""The navigation properties whose declared type is a certificate profile base."""

PROFILE_BASES: Final[dict[str, tuple[str, ...]]] = {
    "androidDeviceOwnerImportedPFXCertificateProfile": ("androidDeviceOwnerCertificateProfileBase",),
    "androidDeviceOwnerPkcsCertificateProfile": ("androidDeviceOwnerCertificateProfileBase",),
    "androidDeviceOwnerScepCertificateProfile": ("androidDeviceOwnerCertificateProfileBase",),
    "androidForWorkImportedPFXCertificateProfile": ("androidCertificateProfileBase",),
    "androidForWorkPkcsCertificateProfile": ("androidForWorkCertificateProfileBase",),
    "androidForWorkScepCertificateProfile": ("androidForWorkCertificateProfileBase",),
    "androidImportedPFXCertificateProfile": ("androidCertificateProfileBase",),
    "androidPkcsCertificateProfile": ("androidCertificateProfileBase",),
    "androidScepCertificateProfile": ("androidCertificateProfileBase",),
    "androidWorkProfilePkcsCertificateProfile": ("androidWorkProfileCertificateProfileBase",),
    "androidWorkProfileScepCertificateProfile": ("androidWorkProfileCertificateProfileBase",),
    "aospDeviceOwnerPkcsCertificateProfile": ("aospDeviceOwnerCertificateProfileBase",),
    "aospDeviceOwnerScepCertificateProfile": ("aospDeviceOwnerCertificateProfileBase",),
    "iosImportedPFXCertificateProfile": ("iosCertificateProfile",),
    "iosPkcsCertificateProfile": ("iosCertificateProfileBase", "iosCertificateProfile"),
    "iosScepCertificateProfile": ("iosCertificateProfileBase", "iosCertificateProfile"),
    "macOSImportedPFXCertificateProfile": ("macOSCertificateProfileBase",),
    "macOSPkcsCertificateProfile": ("macOSCertificateProfileBase",),
    "macOSScepCertificateProfile": ("macOSCertificateProfileBase",),
    "windows10ImportedPFXCertificateProfile": ("windowsCertificateProfileBase",),
    "windows10PkcsCertificateProfile": ("windows10CertificateProfileBase", "windowsCertificateProfileBase"),
    "windows81SCEPCertificateProfile": ("windows81CertificateProfileBase", "windowsCertificateProfileBase"),
    "windowsPhone81ImportedPFXCertificateProfile": ("windowsCertificateProfileBase",),
    "windowsPhone81SCEPCertificateProfile": ("windowsPhone81CertificateProfileBase",),
}
"""Each type with `managedDeviceCertificateStates`, with its base types below `deviceConfiguration`."""

PROFILE_TYPES: Final = tuple(PROFILE_BASES)
"""The 24 types that carry `managedDeviceCertificateStates`: the last cast of every route."""

DECLARATIONS: Final[tuple[tuple[str, str, str], ...]] = (
    ("androidDeviceOwnerEnterpriseWiFiConfiguration", "identityCertificateForClientAuthentication",
     "androidDeviceOwnerCertificateProfileBase"),
    ("androidDeviceOwnerVpnConfiguration", "identityCertificate", "androidDeviceOwnerCertificateProfileBase"),
    ("androidEasEmailProfileConfiguration", "identityCertificate", "androidCertificateProfileBase"),
    ("androidEasEmailProfileConfiguration", "smimeSigningCertificate", "androidCertificateProfileBase"),
    ("androidEnterpriseWiFiConfiguration", "identityCertificateForClientAuthentication",
     "androidCertificateProfileBase"),
    ("androidForWorkEasEmailProfileBase", "identityCertificate", "androidForWorkCertificateProfileBase"),
    ("androidForWorkEnterpriseWiFiConfiguration", "identityCertificateForClientAuthentication",
     "androidForWorkCertificateProfileBase"),
    ("androidForWorkVpnConfiguration", "identityCertificate", "androidForWorkCertificateProfileBase"),
    ("androidVpnConfiguration", "identityCertificate", "androidCertificateProfileBase"),
    ("androidWorkProfileEasEmailProfileBase", "identityCertificate", "androidWorkProfileCertificateProfileBase"),
    ("androidWorkProfileEnterpriseWiFiConfiguration", "identityCertificateForClientAuthentication",
     "androidWorkProfileCertificateProfileBase"),
    ("androidWorkProfileVpnConfiguration", "identityCertificate", "androidWorkProfileCertificateProfileBase"),
    ("aospDeviceOwnerEnterpriseWiFiConfiguration", "identityCertificateForClientAuthentication",
     "aospDeviceOwnerCertificateProfileBase"),
    ("iosDeviceFeaturesConfiguration", "identityCertificateForClientAuthentication", "iosCertificateProfileBase"),
    ("iosDeviceFeaturesConfiguration", "singleSignOnExtensionPkinitCertificate", "iosCertificateProfileBase"),
    ("iosEasEmailProfileConfiguration", "identityCertificate", "iosCertificateProfileBase"),
    ("iosEasEmailProfileConfiguration", "smimeEncryptionCertificate", "iosCertificateProfile"),
    ("iosEasEmailProfileConfiguration", "smimeSigningCertificate", "iosCertificateProfile"),
    ("iosEnterpriseWiFiConfiguration", "identityCertificateForClientAuthentication", "iosCertificateProfileBase"),
    ("iosVpnConfiguration", "identityCertificate", "iosCertificateProfileBase"),
    ("iosWiredNetworkConfiguration", "identityCertificateForClientAuthentication", "iosCertificateProfileBase"),
    ("macOSDeviceFeaturesConfiguration", "singleSignOnExtensionPkinitCertificate", "macOSCertificateProfileBase"),
    ("macOSEnterpriseWiFiConfiguration", "identityCertificateForClientAuthentication",
     "macOSCertificateProfileBase"),
    ("macOSVpnConfiguration", "identityCertificate", "macOSCertificateProfileBase"),
    ("macOSWiredNetworkConfiguration", "identityCertificateForClientAuthentication", "macOSCertificateProfileBase"),
    ("windows10VpnConfiguration", "identityCertificate", "windowsCertificateProfileBase"),
    ("windowsPhone81VpnConfiguration", "identityCertificate", "windowsPhone81CertificateProfileBase"),
    ("windowsWifiEnterpriseEAPConfiguration", "identityCertificateForClientAuthentication",
     "windowsCertificateProfileBase"),
    ("windowsWiredNetworkConfiguration", "identityCertificateForClientAuthentication",
     "windowsCertificateProfileBase"),
    ("windowsWiredNetworkConfiguration", "secondaryIdentityCertificateForClientAuthentication",
     "windowsCertificateProfileBase"),
)  # fmt: skip
"""(declaring type, navigation, declared type) of every certificate navigation in the metadata."""

INHERITING_OWNERS: Final[dict[str, str]] = {
    "androidForWorkGmailEasConfiguration": "androidForWorkEasEmailProfileBase",
    "androidForWorkNineWorkEasConfiguration": "androidForWorkEasEmailProfileBase",
    "androidWorkProfileGmailEasConfiguration": "androidWorkProfileEasEmailProfileBase",
    "androidWorkProfileNineWorkEasConfiguration": "androidWorkProfileEasEmailProfileBase",
    "iosikEv2VpnConfiguration": "iosVpnConfiguration",
}
"""Subtypes of a declaring type, which carry its navigations too (subtype -> base)."""

SEED_HOP: Final = "identityCertificate"
"""The seed page's `via` without an owner cast (deviceConfiguration itself has no such navigation)."""


@dataclass(frozen=True)
class Hop:
    """One `via` value: an owner cast and a certificate navigation it carries (declared or inherited)."""

    owner: str
    navigation: str
    declared_on: str
    declared_type: str
    profile_types: tuple[str, ...]

    @property
    def via(self) -> str:
        """The message's `via` for this hop."""
        return f"{self.owner}/{self.navigation}"


def _hops() -> tuple[Hop, ...]:
    subtypes: dict[str, list[str]] = {}
    for subtype, base in INHERITING_OWNERS.items():
        subtypes.setdefault(base, []).append(subtype)
    hops = [
        Hop(owner, navigation, declared_on, declared_type,
            tuple(p for p, bases in PROFILE_BASES.items() if declared_type in bases))
        for declared_on, navigation, declared_type in DECLARATIONS
        for owner in (declared_on, *subtypes.get(declared_on, ()))
    ]  # fmt: skip
    return tuple(sorted(hops, key=lambda hop: (NAVIGATIONS.index(hop.navigation), hop.owner)))


HOPS: Final = _hops()
"""Every (owner, navigation) pair, by navigation then owner."""

VIA_HOPS: Final = {hop.via: hop for hop in HOPS}
"""`via` value (`<owner>/<navigation>`) -> its hop."""

VIA_PROFILE_TYPES: Final[dict[str, frozenset[str]]] = {
    via: frozenset(hop.profile_types) for via, hop in VIA_HOPS.items()
} | {SEED_HOP: frozenset(p for hop in HOPS if hop.navigation == SEED_HOP for p in hop.profile_types)}
"""Every accepted `via` -> the profile types it may be cast to (the seed hop: those of any identityCertificate)."""

SEED_HOP_OWNERS: Final[dict[str, tuple[str, ...]]] = {
    profile: tuple(hop.owner for hop in HOPS if hop.navigation == SEED_HOP and profile in hop.profile_types)
    for profile in PROFILE_TYPES
    if profile in VIA_PROFILE_TYPES[SEED_HOP]
}
"""Profile type -> the owner types whose identityCertificate reaches it: the owner casts the seed hop lacks."""

OWNER_NAVIGATIONS: Final[dict[str, tuple[str, ...]]] = {
    owner: tuple(hop.navigation for hop in HOPS if hop.owner == owner) for owner in sorted({h.owner for h in HOPS})
}
"""Every owner type -> the certificate navigations it carries."""

NAVIGATION_OWNERS: Final[dict[str, tuple[str, ...]]] = {
    navigation: tuple(hop.owner for hop in HOPS if hop.navigation == navigation) for navigation in NAVIGATIONS
}
"""Every navigation -> the owner types that carry it."""
