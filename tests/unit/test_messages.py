"""The message model against the Graph beta schema and docs/contract.md sections 1 and 3."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.contract import graph_schema as gs
from shared.contract.errors import MessageRejected
from shared.contract.messages import CertificateStateUpdate, UpdateMessage
from shared.contract.parsing import parse_message
from shared.graph.routes import PREFER_UNKNOWN_ENUM_MEMBERS, build_request
from tests.support.reference import doc_example_body, graph_schema, seed_example_body

SCHEMA = graph_schema()
STATE_ID = "d99bc884-c884-d99b-84c8-9bd984c89bd9"
SAMPLE_BY_TYPE: dict[str, Any] = {
    "Edm.String": "some text",
    "Edm.Int32": 2048,
    "Edm.DateTimeOffset": "2027-01-01T00:02:14.9489247-08:00",
}


def message(update: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "profileType": "iosScepCertificateProfile",
        "deviceConfigurationId": "b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11",
        "managedDeviceCertificateStateId": STATE_ID,
        "update": update,
        **envelope,
    }


def rejected(document: dict[str, Any]) -> MessageRejected:
    with pytest.raises(MessageRejected) as caught:
        parse_message(document)
    return caught.value


def sample(name: str, spec: dict[str, Any]) -> Any:
    if name == "id":
        return STATE_ID
    if spec["type"].startswith("graph."):
        members = SCHEMA["enums"][spec["type"].removeprefix("graph.")]
        return next(m for m in members if m != "unknownFutureValue")
    return SAMPLE_BY_TYPE[spec["type"]]


def test_the_model_knows_exactly_the_schema_properties_plus_the_seed_ones():
    model = {field.alias for field in CertificateStateUpdate.model_fields.values()}
    assert model == set(SCHEMA["properties"]) | {"serverUrl", "enhancedKeyUsage", "@odata.type"}  # + the annotation
    assert set(gs.LEGACY_PROPERTIES) == {"serverUrl", "enhancedKeyUsage"}


@pytest.mark.parametrize(("name", "spec"), sorted(SCHEMA["properties"].items()))
def test_every_schema_property_is_accepted_and_sent_as_given(name: str, spec: dict[str, Any]):
    value = sample(name, spec)
    parsed = parse_message(message({name: value}))
    assert parsed.update.body() == {name: value}


@pytest.mark.parametrize(("name", "spec"), sorted(SCHEMA["properties"].items()))
def test_null_is_accepted_exactly_where_the_schema_says_nullable(name: str, spec: dict[str, Any]):
    document = message({name: None})
    if spec["nullable"]:
        assert parse_message(document).update.body() == {name: None}
    else:
        error = rejected(document)
        assert error.details[0].field == f"update.{name}"
        assert "not nullable" in error.details[0].message


@pytest.mark.parametrize(
    ("enum", "member"),
    [(enum, member) for enum, members in sorted(SCHEMA["enums"].items()) for member in members if enum != "keySize"],
)
def test_every_enum_member_is_accepted_except_the_sentinel(enum: str, member: str):
    prop = next(n for n, p in SCHEMA["properties"].items() if p["type"] == f"graph.{enum}")
    document = message({prop: member})
    if member == "unknownFutureValue":
        assert "never sent" in rejected(document).details[0].message
    else:
        assert parse_message(document).update.body() == {prop: member}


def test_enum_types_match_the_schema_declaration_order():
    for enum in gs.ENUM_TYPES:
        assert list(enum.members) == SCHEMA["enums"][enum.name]
        assert enum.is_flags == SCHEMA["enumDetails"][enum.name]["isFlags"]


def test_members_after_unknown_future_value_are_sent_with_the_prefer_header():
    after = parse_message(message({"devicePlatform": "windowsMobileApplicationManagement"}))
    before = parse_message(message({"devicePlatform": "iOSMobileApplicationManagement"}))
    assert build_request("https://g/beta", after).headers == {"Prefer": PREFER_UNKNOWN_ENUM_MEMBERS}
    assert build_request("https://g/beta", before).headers == {}


@pytest.mark.parametrize(
    ("prop", "value", "ok"),
    [
        ("certificateKeyUsage", "keyEncipherment,digitalSignature", True),
        ("certificateKeyUsage", "digitalSignature,keyEncipherment", True),
        ("certificateKeyUsage", "keyEncipherment,keyEncipherment", False),
        ("certificateKeyUsage", "keyEncipherment, digitalSignature", False),
        ("certificateKeyUsage", "", False),
        ("certificateKeyUsage", "keyEncipherment,", False),
        ("certificateSubjectAlternativeNameFormat", "emailAddress,userPrincipalName,domainNameService", True),
        ("certificateSubjectAlternativeNameFormat", "emailAddress,unknownFutureValue", False),
        ("devicePlatform", "iOS,macOS", False),
        ("devicePlatform", "ios", False),
    ],
)
def test_flags_enums_take_comma_separated_members(prop: str, value: str, ok: bool):
    if ok:
        assert parse_message(message({prop: value})).update.body() == {prop: value}
    else:
        assert rejected(message({prop: value})).details[0].field == f"update.{prop}"


@pytest.mark.parametrize(
    ("value", "ok"),
    [(2**31 - 1, True), (-(2**31), True), (0, True), (2**31, False), (-(2**31) - 1, False), ("4", False),
     (4.0, False), (True, False)],
)  # fmt: skip
def test_int32_is_checked_in_range_and_type(value: Any, ok: bool):
    document = message({"certificateKeyLength": value})
    if ok:
        assert parse_message(document).update.body() == {"certificateKeyLength": value}
    else:
        assert rejected(document).details[0].field == "update.certificateKeyLength"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2027-01-01T00:02:14.9489247-08:00", True),
        ("2027-01-01T00:02:14Z", True),
        ("2027-01-01T00:02:14.1+05:30", True),
        ("2027-01-01T00:02Z", True),  # seconds are optional in OData's grammar
        ("2027-01-01T00:02.5Z", False),  # a fraction only after the seconds
        ("2027-01-01T00:02:14.Z", False),
        ("2027-01-01T00:02:14.94892471Z", False),  # 8 fractional digits
        ("2027-01-01T00:02:14", False),  # no offset
        ("2027-01-01T00:02:14Z\n", False),  # a final newline ($ would let it through)
        ("2027-01-01t00:02:14z", False),
        ("2027-01-01 00:00:00Z", False),
        ("٢٠٢٧-01-01T00:00:00Z", False),  # digits, but not ASCII ones
        ("2024-02-29T00:00:00Z", True),
        ("2000-02-29T00:00:00Z", True),
        ("2027-02-29T00:00:00Z", False),
        ("1900-02-29T00:00:00Z", False),
        ("2027-02-30T00:00:00Z", False),
        ("2027-04-31T00:00:00Z", False),
        ("2027-13-01T00:00:00Z", False),
        ("2027-01-01T24:00:00Z", False),
        ("2027-01-01T23:59:60Z", False),  # a leap second: in the grammar, not in Graph's DateTimeOffset
        ("2027-01-01T00:00:00+14:00", True),
        ("2027-01-01T00:00:00-14:00", True),
        ("2027-01-01T00:00:00+14:01", False),
        ("2027-01-01T00:00:00-15:00", False),
        ("2027-01-01T00:00:00+24:00", False),
        ("2027-01-01T00:00:00+05:60", False),
        ("2027-01-01T00:00:00-00:00", True),
        ("0001-01-01T00:00:00Z", True),
        ("0000-01-01T00:00:00Z", False),
        ("-2027-01-01T00:00:00Z", False),
        ("12027-01-01T00:00:00Z", False),
        ("0001-01-01T00:00:00+00:01", False),  # before year 1 in UTC
        ("9999-12-31T23:59:59.9999999Z", True),
        ("9999-12-31T23:59:59-00:01", False),  # after 9999 in UTC
        (1700000000, False),
    ],
)
def test_datetime_offset_follows_the_odata_grammar_within_graphs_range(value: Any, ok: bool):
    document = message({"certificateExpirationDateTime": value})
    if ok:
        assert parse_message(document).update.body() == {"certificateExpirationDateTime": value}
    else:
        assert rejected(document).details[0].field == "update.certificateExpirationDateTime"


def test_the_message_schema_pattern_agrees_with_the_model_on_the_shape():
    pattern = UpdateMessage.model_json_schema(by_alias=True)["properties"]["expiresAt"]["pattern"]
    assert pattern.startswith("^")
    assert pattern.endswith("$")
    assert re.search(pattern, "2027-01-01T00:02:14.9489247-08:00")
    assert not re.search(pattern, "2027-01-01T00:02.5Z")
    assert not re.search(pattern, "2027-01-01T00:00:00+14:30")


def test_the_seed_example_body_round_trips_with_its_seven_digit_timestamps():
    body = seed_example_body()
    parsed = parse_message(message(body))
    sent = build_request("https://graph.microsoft.com/beta", parsed).body
    assert sent == body
    assert list(sent) == list(body)
    assert sent["certificateExpirationDateTime"] == "2017-01-01T00:02:14.9489247-08:00"
    assert parsed.update.warnings == [gs.LEGACY_PROPERTIES["serverUrl"], gs.LEGACY_PROPERTIES["enhancedKeyUsage"]]


def test_only_the_given_properties_are_sent():
    parsed = parse_message(message({"certificateIssuer": "CA", "certificateThumbprint": None}))
    assert parsed.update.body() == {"certificateIssuer": "CA", "certificateThumbprint": None}


@pytest.mark.parametrize(
    ("update", "field", "suggestion"),
    [
        ({"certificateKeyUsages": "digitalSignature"}, "update.certificateKeyUsages", "certificateKeyUsage"),
        ({"devicePlatfrom": "iOS"}, "update.devicePlatfrom", "devicePlatform"),
        ({"CertificateIssuer": "x"}, "update.CertificateIssuer", "certificateIssuer"),
        ({"serverURL": "x"}, "update.serverURL", "serverUrl"),
    ],
)
def test_an_unknown_property_is_rejected_naming_the_closest_known_one(update, field, suggestion):
    detail = rejected(message(update)).details[0]
    assert detail.field == field
    assert f"did you mean {suggestion!r}" in detail.message


def test_unknown_envelope_fields_and_snake_case_names_are_rejected():
    error = rejected({**message({"certificateIssuer": "x"}), "profile_type": "iosScepCertificateProfile"})
    assert error.details[0].field == "profile_type"
    assert "did you mean 'profileType'" in error.details[0].message


def test_every_fault_is_named_not_just_the_first():
    error = rejected({"profileType": "nope", "update": {"certificateKeyLength": "x"}})
    fields = {d.field for d in error.details}
    assert fields == {
        "profileType",
        "deviceConfigurationId",
        "managedDeviceCertificateStateId",
        "update.certificateKeyLength",
    }
    assert error.message == "profileType is invalid (and 3 more; see details)"  # its reason quotes 'nope'


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"update": {}}, "update"),
        ({"update": {"id": "other"}}, "update"),
        ({"correlationId": "has space"}, "correlationId"),
        ({"correlationId": "x" * 129}, "correlationId"),
        ({"via": "identityCertificate/extra"}, "via"),
        ({"via": "iosScepCertificateProfile/identityCertificate"}, "via"),
        ({"dryRun": "true"}, "dryRun"),
        ({"expiresAt": "tomorrow"}, "expiresAt"),
        ({"profileType": "windows10VpnConfiguration"}, "profileType"),
    ],
)
def test_envelope_rules(envelope: dict[str, Any], field: str):
    document = {**message({"certificateIssuer": "x"}), **envelope}
    assert rejected(document).details[0].field == field


def test_update_id_equal_to_the_state_id_is_sent():
    assert parse_message(message({"id": STATE_ID})).update.body() == {"id": STATE_ID}


def test_the_message_schema_lists_every_property_and_forbids_others():
    schema = UpdateMessage.model_json_schema(by_alias=True)
    update = schema["$defs"]["CertificateStateUpdate"]
    assert set(update["properties"]) == set(SCHEMA["properties"]) | set(gs.LEGACY_PROPERTIES) | {"@odata.type"}
    assert update["additionalProperties"] is False
    assert schema["additionalProperties"] is False


def test_the_doc_example_body_is_sent_verbatim_with_its_odata_type():
    body = doc_example_body()
    assert next(iter(body)) == "@odata.type"
    parsed = parse_message(message(body))
    sent = build_request("https://graph.microsoft.com/beta", parsed).body
    assert sent == body
    assert list(sent) == list(body)
    assert parsed.warnings == []


@pytest.mark.parametrize(
    "value", ["#microsoft.graph.iosScepCertificateProfile", "microsoft.graph.managedDeviceCertificateState",
              "#Microsoft.Graph.ManagedDeviceCertificateState", None, 1, ""],
)  # fmt: skip
def test_odata_type_must_be_the_entity_s_own(value: Any):
    detail = rejected(message({"@odata.type": value, "certificateIssuer": "x"})).details[0]
    assert detail.field == "update.@odata.type"
    assert gs.ENTITY_ODATA_TYPE in detail.message


def test_odata_type_is_not_a_property():
    only = rejected(message({"@odata.type": gs.ENTITY_ODATA_TYPE})).details[0]
    assert (only.field, "at least one property" in only.message) == ("update", True)
    body = parse_message(message({"certificateIssuer": "x", "@odata.type": gs.ENTITY_ODATA_TYPE})).update.body()
    assert list(body) == ["certificateIssuer", "@odata.type"]  # sent as given, where given
