"""examples/: the valid ones pass the model and the committed schema and succeed against the Graph simulator;
each invalid one fails for exactly the reason its file name gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from devstack.graph_simulator import GraphSimulator
from devstack.identity_emulator import TokenClaims
from producer.schemas import SCHEMA_DIR
from shared.contract.errors import ErrorCode, MessageRejected
from shared.contract.messages import UpdateMessage
from shared.contract.parsing import decode_body, parse_message
from shared.graph.routes import build_request, route_path
from tests.support.reference import doc_example_body, doc_patch_paths, seed_example_body, seed_patch_paths

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_ROUTES = sorted((EXAMPLES / "seed-routes").glob("*.json"))
DOC_ROUTES = sorted((EXAMPLES / "doc-routes").glob("*.json"))
VALID = [*SEED_ROUTES, *DOC_ROUTES, EXAMPLES / "dry-run.json"]
INVALID = sorted((EXAMPLES / "invalid").iterdir())
KEY = bytes(range(32))
APP = "0b1e55ed-0000-4000-8000-0000000000e5"


def load(path: Path) -> dict[str, Any]:
    return decode_body(path.read_bytes())


# ---- the committed JSON Schema, checked with jsonschema (Draft 2020-12, as the schema declares) ------


@pytest.fixture(scope="module")
def message_schema() -> Draft202012Validator:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / "message.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(validator: Draft202012Validator, value: Any) -> list[str]:
    """`/path: keyword` for every error, so a test can say where and why a document fails."""
    return sorted(f"/{'/'.join(map(str, e.absolute_path))}: {e.validator}" for e in validator.iter_errors(value))


def test_the_schema_check_catches_what_it_should(message_schema: Draft202012Validator):
    good = load(EXAMPLES / "dry-run.json")
    assert schema_errors(message_schema, good) == []
    assert schema_errors(message_schema, {**good, "extra": 1}) == ["/: additionalProperties"]
    assert schema_errors(message_schema, {**good, "update": {"certificateKeyLength": 2**31}})[0].startswith(
        "/update/certificateKeyLength: "
    )
    assert schema_errors(message_schema, {**good, "dryRun": 1}) == ["/dryRun: type"]
    assert schema_errors(message_schema, {**good, "update": {"devicePlatform": "unknownFutureValue"}})
    forbidden = {**good, "via": "windowsPhone81VpnConfiguration/identityCertificate"}
    assert schema_errors(message_schema, forbidden) == ["/: anyOf"]
    assert schema_errors(message_schema, {**forbidden, "profileType": "windowsPhone81SCEPCertificateProfile"}) == []
    assert schema_errors(message_schema, {**good, "via": None}) == []


# ---- valid examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_passes_model_and_schema(path: Path, message_schema: Draft202012Validator):
    document = load(path)
    parse_message(document)
    assert schema_errors(message_schema, document) == []


def placeholders(paths: list[Path]) -> list[str]:
    """The routes of the example files, with the doc pages' placeholders for their ids."""
    routes = []
    for path in paths:
        message = UpdateMessage.from_wire(load(path))
        routes.append(
            route_path(message)
            .replace(message.device_configuration_id, "{deviceConfigurationId}")
            .replace(message.managed_device_certificate_state_id, "{managedDeviceCertificateStateId}")
        )
    return routes


def test_there_is_one_example_per_seed_route_in_the_seed_order():
    assert len(SEED_ROUTES) == 7
    assert placeholders(SEED_ROUTES) == seed_patch_paths()


def test_there_is_one_example_per_doc_route_in_the_doc_order():
    assert len(DOC_ROUTES) == 24
    assert placeholders(DOC_ROUTES) == doc_patch_paths()


def test_the_first_seed_example_carries_the_seed_page_body():
    assert load(SEED_ROUTES[0])["update"] == seed_example_body()


def test_the_first_doc_example_carries_the_doc_page_body_verbatim():
    text = DOC_ROUTES[0].read_text(encoding="utf-8")
    assert load(DOC_ROUTES[0])["update"] == doc_example_body()
    assert list(load(DOC_ROUTES[0])["update"]) == list(doc_example_body())
    assert '"@odata.type": "#microsoft.graph.managedDeviceCertificateState"' in text


def test_batch_jsonl_is_the_seven_seed_routes():
    lines = [json.loads(ln) for ln in (EXAMPLES / "batch.jsonl").read_text(encoding="utf-8").splitlines() if ln]
    assert lines == [load(p) for p in SEED_ROUTES]


def test_dry_run_example_is_a_dry_run():
    assert UpdateMessage.from_wire(load(EXAMPLES / "dry-run.json")).dry_run is True


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphSimulator]:
    with GraphSimulator(KEY) as simulator:
        yield simulator


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_succeeds_against_the_graph_simulator(path: Path, graph: GraphSimulator):
    message = UpdateMessage.from_wire(load(path))
    patch = build_request(graph.base_url, message)
    token = TokenClaims.issue(graph.origin, APP).sign(KEY)
    response = requests.patch(
        patch.url, json=patch.body, headers={"Authorization": f"Bearer {token}", **patch.headers}, timeout=10
    )
    assert response.status_code == 200, response.text
    stored = response.json()
    assert {name: stored[name] for name in patch.body} == patch.body


# ---- invalid examples -------------------------------------------------------------------------------

# file stem -> (error code, field at fault or None for malformed, a phrase of the reason)
INVALID_FIELD, MALFORMED = ErrorCode.VALIDATION_FAILED, ErrorCode.MALFORMED_MESSAGE
EXPECTED: dict[str, tuple[ErrorCode, str | None, str]] = {
    "unknown-property": (INVALID_FIELD, "update.certificateKeyLenght", "did you mean 'certificateKeyLength'"),
    "unknown-top-level-property": (INVALID_FIELD, "dryrun", "did you mean 'dryRun'"),
    "null-for-non-nullable": (INVALID_FIELD, "update.certificateKeyLength", "null is not allowed"),
    "path-traversal-id": (INVALID_FIELD, "managedDeviceCertificateStateId", "(and not . or ..)"),
    "unknown-future-value": (INVALID_FIELD, "update.devicePlatform", "unknownFutureValue is Graph's sentinel"),
    "id-mismatch": (INVALID_FIELD, "update", "must equal managedDeviceCertificateStateId"),
    "eight-fractional-digits": (INVALID_FIELD, "update.certificateExpirationDateTime", "ISO 8601"),
    "datetime-without-offset": (INVALID_FIELD, "update.certificateExpirationDateTime", "with an offset"),
    "int32-out-of-range": (INVALID_FIELD, "update.certificateKeyLength", "less than or equal to 2147483647"),
    "string-for-integer": (INVALID_FIELD, "update.certificateKeyLength", "valid integer"),
    "not-an-enum-member": (INVALID_FIELD, "update.certificateIssuanceState", "not a certificateIssuanceStates member"),
    "repeated-flags-member": (INVALID_FIELD, "update.certificateKeyUsage", "repeats a member"),
    "empty-update": (INVALID_FIELD, "update", "at least one property"),
    "missing-profile-type": (INVALID_FIELD, "profileType", "is required"),
    "unknown-profile-type": (INVALID_FIELD, "profileType", "has no managedDeviceCertificateStates"),
    "unknown-via-owner": (INVALID_FIELD, "via", "ownerType must be one of"),
    "navigation-the-owner-lacks": (INVALID_FIELD, "via", "the certificate navigations it has: identityCertificate"),
    "forbidden-cast": (INVALID_FIELD, "profileType", "whose profile types are: windowsPhone81SCEPCertificateProfile"),
    "fraction-after-minutes": (INVALID_FIELD, "update.certificateExpirationDateTime", "OData DateTimeOffset"),
    "not-a-leap-year": (INVALID_FIELD, "update.certificateExpirationDateTime", "not a real date"),
    "odata-type-of-another-entity": (INVALID_FIELD, "update.@odata.type", "'#microsoft.graph.managedDevice"),
    "odata-type-only": (INVALID_FIELD, "update", "at least one property"),
    "bad-correlation-id": (INVALID_FIELD, "correlationId", "1-128 characters"),
    "duplicate-key": (MALFORMED, None, "duplicate key 'certificateKeyLength'"),
    "not-an-object": (MALFORMED, None, "must be a JSON object, not list"),
    "not-json": (MALFORMED, None, "is not valid JSON"),
}  # fmt: skip

# The smallest change that makes each file valid, where the reason is a detail of a value: proof that the
# named detail, and nothing else in the file, is what the function refuses.
FIXES = {
    "eight-fractional-digits": ("14.94892471-08:00", "14.9489247-08:00"),
    "datetime-without-offset": ('14.9489247"', '14.9489247-08:00"'),
    "int32-out-of-range": ("2147483648", "2147483647"),
    "string-for-integer": ('"2048"', "2048"),
    "unknown-future-value": ("unknownFutureValue", "windowsPhone81"),
    "null-for-non-nullable": ("null", "2048"),
    "unknown-property": ("certificateKeyLenght", "certificateKeyLength"),
    "unknown-top-level-property": ('"dryrun"', '"dryRun"'),
    "path-traversal-id": ("../../../users/me", "d99bc884-c884-d99b-84c8-9bd984c89bd9"),
    "bad-correlation-id": ("order 4711/retry", "order-4711.retry"),
    "forbidden-cast": ("iosScepCertificateProfile", "windowsPhone81SCEPCertificateProfile"),
    "navigation-the-owner-lacks": ("/identityCertificateForClientAuthentication", "/identityCertificate"),
    "fraction-after-minutes": ("00:02.5Z", "00:02:05Z"),
    "not-a-leap-year": ("2027-02-29", "2028-02-29"),
    "odata-type-of-another-entity": ("graph.iosScepCertificateProfile", "graph.managedDeviceCertificateState"),
}


def test_every_invalid_example_has_an_expectation():
    assert sorted(p.stem for p in INVALID) == sorted(EXPECTED)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_fails_for_the_reason_its_name_gives(path: Path):
    code, field, phrase = EXPECTED[path.stem]
    with pytest.raises(MessageRejected) as caught:
        parse_message(decode_body(path.read_bytes()))
    rejection = caught.value
    assert rejection.code is code
    if field is None:
        assert phrase in rejection.message
        return
    assert [(d.field, phrase in d.message) for d in rejection.details] == [(field, True)], rejection.details
    if path.stem in FIXES:
        wrong, right = FIXES[path.stem]
        text = path.read_text(encoding="utf-8")
        assert text.count(wrong) == 1
        parse_message(decode_body(text.replace(wrong, right).encode()))
