"""The Graph beta schema of managedDeviceCertificateState, as this project speaks it.

Transcribed from the beta CSDL (see tests/data/graph-schema.json, whose test keeps this
module honest). Enum members keep declaration order: for an evolvable enum, members after
`unknownFutureValue` are only understood by Graph with `Prefer: include-unknown-enum-members`.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class EnumType(NamedTuple):
    """A Graph enum type: its members in declaration order and whether it is a flags enum."""

    name: str
    members: tuple[str, ...]
    is_flags: bool = False

    @property
    def sendable(self) -> tuple[str, ...]:
        """Members a client may send (never the `unknownFutureValue` sentinel)."""
        return tuple(m for m in self.members if m != UNKNOWN_FUTURE_VALUE)

    @property
    def after_sentinel(self) -> frozenset[str]:
        """Members Graph only accepts with `Prefer: include-unknown-enum-members`."""
        if UNKNOWN_FUTURE_VALUE not in self.members:
            return frozenset()
        return frozenset(self.members[self.members.index(UNKNOWN_FUTURE_VALUE) + 1 :])


UNKNOWN_FUTURE_VALUE: Final = "unknownFutureValue"

DEVICE_PLATFORM_TYPE: Final = EnumType(
    "devicePlatformType",
    (
        "android", "androidForWork", "iOS", "macOS", "windowsPhone81", "windows81AndLater",
        "windows10AndLater", "androidWorkProfile", "unknown", "androidAOSP",
        "androidMobileApplicationManagement", "iOSMobileApplicationManagement",
        UNKNOWN_FUTURE_VALUE, "windowsMobileApplicationManagement",
    ),
)  # fmt: skip
KEY_USAGES: Final = EnumType("keyUsages", ("keyEncipherment", "digitalSignature"), is_flags=True)
CERTIFICATE_ISSUANCE_STATES: Final = EnumType(
    "certificateIssuanceStates",
    (
        "unknown", "challengeIssued", "challengeIssueFailed", "requestCreationFailed",
        "requestSubmitFailed", "challengeValidationSucceeded", "challengeValidationFailed",
        "issueFailed", "issuePending", "issued", "responseProcessingFailed", "responsePending",
        "enrollmentSucceeded", "enrollmentNotNeeded", "revoked", "removedFromCollection",
        "renewVerified", "installFailed", "installed", "deleteFailed", "deleted",
        "renewalRequested", "requested",
    ),
)  # fmt: skip
CERTIFICATE_REVOCATION_STATUS: Final = EnumType(
    "certificateRevocationStatus", ("none", "pending", "issued", "failed", "revoked")
)
CERTIFICATE_VALIDITY_PERIOD_SCALE: Final = EnumType("certificateValidityPeriodScale", ("days", "months", "years"))
KEY_STORAGE_PROVIDER_OPTION: Final = EnumType(
    "keyStorageProviderOption",
    (
        "useTpmKspOtherwiseUseSoftwareKsp", "useTpmKspOtherwiseFail",
        "usePassportForWorkKspOtherwiseFail", "useSoftwareKsp",
    ),
)  # fmt: skip
SUBJECT_ALTERNATIVE_NAME_TYPE: Final = EnumType(
    "subjectAlternativeNameType",
    (
        "none", "emailAddress", "userPrincipalName", "customAzureADAttribute",
        "domainNameService", "universalResourceIdentifier",
    ),
    is_flags=True,
)  # fmt: skip
SUBJECT_NAME_FORMAT: Final = EnumType(
    "subjectNameFormat",
    (
        "commonName", "commonNameIncludingEmail", "commonNameAsEmail", "custom", "commonNameAsIMEI",
        "commonNameAsSerialNumber", "commonNameAsAadDeviceId", "commonNameAsIntuneDeviceId",
        "commonNameAsDurableDeviceId",
    ),
)  # fmt: skip

ENUM_TYPES: Final = (
    DEVICE_PLATFORM_TYPE, KEY_USAGES, CERTIFICATE_ISSUANCE_STATES, CERTIFICATE_REVOCATION_STATUS,
    CERTIFICATE_VALIDITY_PERIOD_SCALE, KEY_STORAGE_PROVIDER_OPTION, SUBJECT_ALTERNATIVE_NAME_TYPE,
    SUBJECT_NAME_FORMAT,
)  # fmt: skip


LEGACY_PROPERTIES: Final[dict[str, str]] = {
    "serverUrl": "serverUrl is not in the current Graph beta schema; it was sent as given",
    "enhancedKeyUsage": (
        "enhancedKeyUsage is named certificateEnhancedKeyUsage in the current Graph beta schema; it was sent as given"
    ),
}
"""The seed page's properties the current schema dropped or renamed, with the outcome warning."""

ENTITY_ODATA_TYPE: Final = "#microsoft.graph.managedDeviceCertificateState"
"""The only `@odata.type` an update may carry: the entity's own (the current doc's example sends it)."""
