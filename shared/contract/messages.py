"""The input message (docs/contract.md sections 1 and 3) as Pydantic models.

Validation is strict because a message that Graph would refuse, or that could steer the
request anywhere but its one route, must be rejected before any network call. Values are
kept exactly as the producer wrote them (DateTimeOffset stays a string) so that what goes to
Graph is what was asked for, to the seventh fractional digit.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from shared.contract import graph_schema as gs
from shared.contract import navigation as nav


def _pattern(body: str) -> tuple[re.Pattern[str], str]:
    """A regex anchored at the true end for Python (`$` would match before a final newline), and its JSON Schema."""
    return re.compile(rf"{body}\Z"), f"^{body}$"


# OData ABNF dateTimeOffsetValue (docs/outcomes.md says which edges are narrowed and why): seconds optional, a
# fraction only after them, 1-7 digits (Edm precision 7), years 0001-9999, offsets within +-14:00, upper-case T/Z.
_DATETIME_OFFSET, _DATETIME_OFFSET_SCHEMA = _pattern(
    r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,7})?)?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
_ID, _ID_SCHEMA = _pattern(r"[A-Za-z0-9\-_.~:]{1,256}")
CORRELATION_ID, _CORRELATION_ID_SCHEMA = _pattern(r"[A-Za-z0-9._:@-]{1,128}")
_SHOWN = 80  # at most this much of a rejected value is echoed in an error message
_EDGE_YEARS = frozenset({"0001", "9999"})  # only there can an offset carry the instant out of range
GUID, _GUID_SCHEMA = _pattern(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
"""An Entra tenant id, anchored at the true end: nothing, not even a newline, may follow."""


def to_datetime(value: str) -> datetime:
    """Read an Edm.DateTimeOffset (digits past the sixth fractional one only matter to Graph)."""
    if _DATETIME_OFFSET.match(value) is None:
        msg = (
            "must be an OData DateTimeOffset: YYYY-MM-DDThh:mm[:ss[.fffffff]] then Z or +-hh:mm up to 14:00 "
            "(ISO 8601 with an offset), e.g. 2027-01-01T00:02:14.9489247-08:00"
        )
        raise ValueError(msg)
    try:
        moment = datetime.fromisoformat(value)  # the pattern admits only forms it reads as OData means them
        if value[:4] in _EDGE_YEARS:
            moment.astimezone(UTC)
    except ValueError as err:
        msg = f"is not a real date and time ({err})"
        raise ValueError(msg) from None
    except OverflowError:
        msg = "falls outside the years 0001-9999 once its offset is applied"
        raise ValueError(msg) from None
    return moment


def _datetime_offset(value: str) -> str:
    """Check an Edm.DateTimeOffset and keep it exactly as written."""
    to_datetime(value)
    return value


def _not_null_in_schema(schema: dict[str, Any]) -> None:
    """Describe an optional, non-nullable property as the validator treats it: absent or a value, never null."""
    schema.pop("default", None)
    (value,) = [branch for branch in schema.pop("anyOf") if branch != {"type": "null"}]
    schema.update(value)


def _reject_null(value: object, info: ValidationInfo) -> object:
    if value is None:
        msg = f"null is not allowed here: {info.field_name and to_camel(info.field_name)} is not nullable in Graph"
        raise ValueError(msg)
    return value


class _GraphEnum:
    """Annotated metadata: checks a (flags) enum value and describes it in the JSON Schema."""

    def __init__(self, enum: gs.EnumType) -> None:
        self.enum = enum
        self.allowed = frozenset(enum.sendable)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:  # noqa: ANN401
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        if self.enum.is_flags:
            member = "|".join(self.enum.sendable)
            return {"type": "string", "pattern": f"^({member})(,({member}))*$", "description": self.enum.name}
        return {"type": "string", "enum": list(self.enum.sendable), "description": self.enum.name}

    def check(self, value: str | None) -> str | None:
        if value is None:
            return None
        members = value.split(",") if self.enum.is_flags else [value]
        for member in members:
            if member == gs.UNKNOWN_FUTURE_VALUE:
                msg = f"{gs.UNKNOWN_FUTURE_VALUE} is Graph's sentinel for newer members and is never sent"
                raise ValueError(msg)
            if member not in self.allowed:
                kind = "a comma-separated list of" if self.enum.is_flags else "one of"
                msg = f"{member!r} is not a {self.enum.name} member; expected {kind}: {', '.join(self.enum.sendable)}"
                raise ValueError(msg)
        if len(set(members)) != len(members):
            msg = f"{value!r} repeats a member"
            raise ValueError(msg)
        return value


_INT32_SCHEMA = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_DATETIME_SCHEMA = {"type": "string", "pattern": _DATETIME_OFFSET_SCHEMA}
_NOT_NULL = BeforeValidator(_reject_null)

String = Annotated[StrictStr | None, WithJsonSchema({"type": ["string", "null"]})]
Int32 = Annotated[
    Annotated[int, Field(strict=True, ge=-(2**31), le=2**31 - 1)] | None, _NOT_NULL, WithJsonSchema(_INT32_SCHEMA)
]
DateTimeOffset = Annotated[
    Annotated[StrictStr, AfterValidator(_datetime_offset)] | None, _NOT_NULL, WithJsonSchema(_DATETIME_SCHEMA)
]


DevicePlatformType = Annotated[StrictStr | None, _NOT_NULL, _GraphEnum(gs.DEVICE_PLATFORM_TYPE)]
KeyUsages = Annotated[StrictStr | None, _NOT_NULL, _GraphEnum(gs.KEY_USAGES)]
CertificateIssuanceStates = Annotated[StrictStr | None, _NOT_NULL, _GraphEnum(gs.CERTIFICATE_ISSUANCE_STATES)]
CertificateRevocationStatus = Annotated[StrictStr | None, _NOT_NULL, _GraphEnum(gs.CERTIFICATE_REVOCATION_STATUS)]
CertificateValidityPeriodScale = Annotated[
    StrictStr | None, _NOT_NULL, _GraphEnum(gs.CERTIFICATE_VALIDITY_PERIOD_SCALE)
]
KeyStorageProviderOption = Annotated[StrictStr | None, _NOT_NULL, _GraphEnum(gs.KEY_STORAGE_PROVIDER_OPTION)]
SubjectAlternativeNameType = Annotated[StrictStr | None, _NOT_NULL, _GraphEnum(gs.SUBJECT_ALTERNATIVE_NAME_TYPE)]
SubjectNameFormat = Annotated[StrictStr | None, _NOT_NULL, _GraphEnum(gs.SUBJECT_NAME_FORMAT)]


def _graph_id(value: str) -> str:
    if not _ID.match(value) or value in {".", ".."}:
        msg = "must be 1-256 characters of letters, digits and - _ . ~ : (and not . or ..)"
        raise ValueError(msg)
    return value


def _profile_type(value: str) -> str:
    if value not in nav.PROFILE_BASES:
        msg = f"{value[:_SHOWN]!r} has no managedDeviceCertificateStates; expected one of: "
        raise ValueError(msg + ", ".join(nav.PROFILE_TYPES))
    return value


def _via(value: str) -> str:
    if value in nav.VIA_PROFILE_TYPES:
        return value
    owner, slash, navigation = value.partition("/")
    if not slash and value in nav.NAVIGATION_OWNERS:
        msg = f"{value} needs an owner cast: '<ownerType>/{value}' with ownerType one of: "
        raise ValueError(msg + ", ".join(nav.NAVIGATION_OWNERS[value]))
    if navigation not in nav.NAVIGATION_OWNERS:
        msg = f"must be '<ownerType>/<navigation>' (or the seed page's '{nav.SEED_HOP}') with navigation one of: "
        raise ValueError(msg + ", ".join(nav.NAVIGATIONS))
    if owner in nav.OWNER_NAVIGATIONS:
        msg = f"{owner} has no {navigation}; the certificate navigations it has: "
        raise ValueError(msg + ", ".join(nav.OWNER_NAVIGATIONS[owner]))
    msg = f"{owner[:_SHOWN]!r} has no {navigation}; ownerType must be one of: "
    raise ValueError(msg + ", ".join(nav.NAVIGATION_OWNERS[navigation]))


def _cast_problem(via: str, profile_type: str) -> str | None:
    """Why `profile_type` cannot follow `via` (both valid on their own), or None when it can."""
    if profile_type in nav.VIA_PROFILE_TYPES[via]:
        return None
    if via == nav.SEED_HOP:
        reachable = ", ".join(nav.SEED_HOP_OWNERS)
        return f"{profile_type} is not reachable through any owner's {via}; the profile types that are: {reachable}"
    hop = nav.VIA_HOPS[via]
    return (
        f"{profile_type} cannot follow {via}: that navigation is typed {hop.declared_type}, whose profile types "
        f"are: {', '.join(hop.profile_types)}"
    )


_SEED_HOP_WARNINGS: Final = {
    profile: (
        f"via '{nav.SEED_HOP}' has no owner cast, and deviceConfiguration has no {nav.SEED_HOP} in the current "
        f"Graph metadata; it was sent as the seed page writes it. Use '<ownerType>/{nav.SEED_HOP}' with the "
        f"configuration's type instead, one of: {', '.join(owners)}"
    )
    for profile, owners in nav.SEED_HOP_OWNERS.items()
}


def _entity_odata_type(value: object) -> object:
    if value != gs.ENTITY_ODATA_TYPE:
        msg = f"must be {gs.ENTITY_ODATA_TYPE!r}, the type of every managedDeviceCertificateStates member"
        raise ValueError(msg)
    return value


def _correlation_id(value: str) -> str:
    if not CORRELATION_ID.match(value):
        msg = "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -"
        raise ValueError(msg)
    return value


def canonical_guid(value: str) -> str:
    """A GUID in lower case, so `ABC…` and `abc…` name the same tenant (its token, budget and gate)."""
    if not GUID.match(value):
        msg = "must be a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47"
        raise ValueError(msg)
    return value.lower()


TenantId = Annotated[
    StrictStr, AfterValidator(canonical_guid), WithJsonSchema({"type": "string", "pattern": _GUID_SCHEMA})
]
GraphId = Annotated[StrictStr, AfterValidator(_graph_id), WithJsonSchema({"type": "string", "pattern": _ID_SCHEMA})]
ProfileType = Annotated[
    StrictStr, AfterValidator(_profile_type), WithJsonSchema({"type": "string", "enum": list(nav.PROFILE_TYPES)})
]
Via = Annotated[
    StrictStr, AfterValidator(_via), WithJsonSchema({"type": "string", "enum": list(nav.VIA_PROFILE_TYPES)})
]
EntityODataType = Annotated[
    StrictStr | None,
    BeforeValidator(_entity_odata_type),
    WithJsonSchema({"type": "string", "enum": [gs.ENTITY_ODATA_TYPE], "description": "an annotation, not a property"}),
]
CorrelationId = Annotated[
    StrictStr, AfterValidator(_correlation_id), WithJsonSchema({"type": "string", "pattern": _CORRELATION_ID_SCHEMA})
]


def _via_casts_schema(schema: dict[str, Any]) -> None:
    """JSON Schema's view of the cast rule: no `via`, or one `via` with the profile types it allows."""
    schema["anyOf"] = [
        {"properties": {"via": {"type": "null"}}},
        *(
            {"properties": {"via": {"enum": [via]}, "profileType": {"enum": sorted(allowed)}}, "required": ["via"]}
            for via, allowed in nav.VIA_PROFILE_TYPES.items()
        ),
    ]


_WIRE = ConfigDict(
    extra="forbid",
    field_title_generator=lambda name, _field: to_camel(name),
    frozen=True,
    alias_generator=to_camel,
    validate_by_alias=True,
    validate_by_name=False,
    serialize_by_alias=True,
)


class CertificateStateUpdate(BaseModel):
    """The properties to PATCH; only the ones given are sent (`model_fields_set`)."""

    model_config = _WIRE

    odata_type: EntityODataType = Field(default=None, alias="@odata.type", title="odata.type")  # no "@": Logic Apps
    id: GraphId | None = Field(default=None, json_schema_extra=_not_null_in_schema)  # Graph's key
    certificate_enhanced_key_usage: String = None
    certificate_error_code: Int32 = None
    certificate_expiration_date_time: DateTimeOffset = None
    certificate_issuance_date_time: DateTimeOffset = None
    certificate_issuance_state: CertificateIssuanceStates = None
    certificate_issuer: String = None
    certificate_key_length: Int32 = None
    certificate_key_storage_provider: KeyStorageProviderOption = None
    certificate_key_usage: KeyUsages = None
    certificate_last_issuance_state_changed_date_time: DateTimeOffset = None
    certificate_profile_display_name: String = None
    certificate_revoke_status: CertificateRevocationStatus = None
    certificate_serial_number: String = None
    certificate_subject_alternative_name_format: SubjectAlternativeNameType = None
    certificate_subject_alternative_name_format_string: String = None
    certificate_subject_name_format: SubjectNameFormat = None
    certificate_subject_name_format_string: String = None
    certificate_thumbprint: String = None
    certificate_validity_period: Int32 = None
    certificate_validity_period_units: CertificateValidityPeriodScale = None
    device_display_name: String = None
    device_platform: DevicePlatformType = None
    last_certificate_state_change_date_time: DateTimeOffset = None
    user_display_name: String = None
    server_url: String = Field(default=None, description="seed-era property, not in the current schema")
    enhanced_key_usage: String = Field(default=None, description="seed-era name of certificateEnhancedKeyUsage")

    @field_validator("id", mode="before")
    @classmethod
    def _id_not_null(cls, value: object, info: ValidationInfo) -> object:
        return _reject_null(value, info)

    _given_order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:  # noqa: ANN401
        model = handler(data)
        if isinstance(data, dict):
            model._given_order = tuple(data)
        return model

    def body(self) -> dict[str, Any]:
        """The PATCH body: exactly the properties given, values and order as given."""
        dumped = self.model_dump(mode="json", by_alias=True, include=self.model_fields_set)
        order = {name: i for i, name in enumerate(self._given_order)}
        return dict(sorted(dumped.items(), key=lambda item: order.get(item[0], len(order))))

    @property
    def needs_unknown_enum_members(self) -> bool:
        """True when a value is an evolvable-enum member newer than `unknownFutureValue`."""
        return self.device_platform in gs.DEVICE_PLATFORM_TYPE.after_sentinel

    @property
    def warnings(self) -> list[str]:
        """One warning for each seed-era property in use."""
        given = {to_camel(name) for name in self.model_fields_set}
        return [text for name, text in gs.LEGACY_PROPERTIES.items() if name in given]


class UpdateMessage(BaseModel):
    """One certificate-state update, as producers put it on the input queue."""

    model_config = ConfigDict(**_WIRE, json_schema_extra=_via_casts_schema)

    correlation_id: CorrelationId | None = None
    via: Via | None = None  # before profileType, whose validator checks the cast against it
    profile_type: ProfileType
    device_configuration_id: GraphId
    managed_device_certificate_state_id: GraphId
    update: CertificateStateUpdate
    tenant_id: TenantId | None = None
    expires_at: DateTimeOffset = None
    dry_run: StrictBool = False

    @field_validator("profile_type")
    @classmethod
    def _a_cast_the_via_allows(cls, profile_type: str, info: ValidationInfo) -> str:
        via = info.data.get("via")
        problem = None if via is None else _cast_problem(via, profile_type)
        if problem is not None:
            raise ValueError(problem)
        return profile_type

    @field_validator("update")
    @classmethod
    def _at_least_one_property_and_matching_id(cls, update: CertificateStateUpdate, info: ValidationInfo) -> Any:  # noqa: ANN401
        if not update.model_fields_set - {"odata_type"}:
            note = " (@odata.type is an annotation, not a property)" if update.model_fields_set else ""
            msg = f"must set at least one property{note}"
            raise ValueError(msg)
        state_id = info.data.get("managed_device_certificate_state_id")
        if update.id is not None and state_id is not None and update.id != state_id:
            msg = f"id {update.id!r} must equal managedDeviceCertificateStateId {state_id!r}"
            raise ValueError(msg)
        return update

    @property
    def warnings(self) -> list[str]:
        """The outcome's warnings: the seed page's owner-less hop, then the update's seed-era properties."""
        hop = [_SEED_HOP_WARNINGS[self.profile_type]] if self.via == nav.SEED_HOP else []
        return hop + self.update.warnings

    @classmethod
    def from_wire(cls, data: object) -> Self:
        """Validate a decoded JSON document by the contract's names only."""
        return cls.model_validate(data, by_alias=True, by_name=False)


class ConsentCheck(BaseModel):
    """A consent check (docs/contract.md section 7): does the tenant's token and app role work? Nothing is written."""

    model_config = _WIRE

    check: Literal["consent"]
    tenant_id: TenantId
    correlation_id: CorrelationId | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        """Validate a decoded JSON document by the contract's names only."""
        return cls.model_validate(data, by_alias=True, by_name=False)


CHECK_KEY: Final = "check"
"""A message with this key is a check (`ConsentCheck`), not an update."""
KNOWN_MESSAGE_FIELDS: Final = tuple(f.alias or n for n, f in UpdateMessage.model_fields.items())
KNOWN_UPDATE_FIELDS: Final = tuple(f.alias or n for n, f in CertificateStateUpdate.model_fields.items())
