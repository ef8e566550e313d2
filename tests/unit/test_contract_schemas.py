"""The committed JSON Schemas are exactly what the models generate, and accept what the function accepts."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from producer.schemas import SCHEMA_DIR, SCHEMAS, render
from shared.contract.messages import ConsentCheck, UpdateMessage


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_the_models(name: str):
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert committed == render(name), f"schemas/{name}.schema.json drifted: run python -m producer.schemas"


MESSAGE = {
    "profileType": "iosScepCertificateProfile",
    "deviceConfigurationId": "cfg-1",
    "managedDeviceCertificateStateId": "state-1",
}
UPDATE_PROPERTIES = sorted(json.loads(render("message"))["properties"]["update"]["properties"])


@pytest.mark.parametrize("name", UPDATE_PROPERTIES)
def test_the_schema_and_the_function_agree_on_null_for_every_update_property(name: str):
    message = {**MESSAGE, "update": {name: None}}
    schema_accepts = Draft202012Validator(json.loads(render("message"))).is_valid(message)
    try:
        UpdateMessage.model_validate(message)
    except ValidationError:
        model_accepts = False
    else:
        model_accepts = True
    assert schema_accepts == model_accepts, f"a producer checking the schema would be surprised by {name}: null"


def test_the_consent_check_schema_and_the_function_agree():
    validator = Draft202012Validator(json.loads(render("consent-check")))
    tenant = "b0000000-0000-4000-8000-00000000000b"
    assert validator.is_valid({"check": "consent", "tenantId": tenant, "correlationId": "check-1"})
    for wrong in ({"check": "consent"}, {"check": "other", "tenantId": tenant}, {"check": "consent", "tenantId": "x"}):
        assert not validator.is_valid(wrong)
        with pytest.raises(ValidationError):
            ConsentCheck.from_wire(wrong)
