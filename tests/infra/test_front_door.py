"""The Logic App front door, read from infra/modules/logicapp.bicep: who may call it, what its run
history keeps, what it validates before enqueueing, and what it answers."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from shared.contract.limits import QUEUE_MESSAGE_BYTES
from shared.contract.messages import CORRELATION_ID
from tests.infra.bicep import (
    REPO,
    body,
    decorator,
    evaluate,
    evaluator,
    module,
    param_default,
    parse,
    render,
    resource,
    text,
    unquote,
    walk,
)

MAIN = "main.bicep"
LOGIC = "modules/logicapp.bicep"


def _variable(name: str) -> Any:
    return parse(LOGIC)["variables"][name]["value"]


def _definition() -> dict[str, Any]:
    definition: dict[str, Any] = body(resource(LOGIC, "workflow"))["properties"]["definition"]
    return definition


def _actions(actions: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every action, nested ones (If branches) included, by its unquoted name."""
    for name, action in (actions if actions is not None else _definition()["actions"]).items():
        yield unquote(name), action
        yield from _actions(action.get("actions", {}))
        yield from _actions(action.get("else", {}).get("actions", {}))


def _action(name: str) -> dict[str, Any]:
    return dict(_actions())[name]


def _run_after(action: dict[str, Any]) -> dict[str, list[str]]:
    return {unquote(k): v for k, v in action["runAfter"].items()}


def _conditional_slots(expr: Any) -> list[tuple[int, str, str]]:
    """(k, key, value) per `length(callerPolicies) > k ? { key: value } : {}` argument of a union()."""
    fn = expr["function"]
    assert fn["type"] == "union"
    slots = []
    for arg in fn["parameters"].values():
        operands = arg["operator"]["operands"]
        comparison = operands["condition"]["operator"]
        assert comparison["type"] == "greater_than"
        assert render(comparison["operands"]["operand_1"]) == "length(callerPolicies)"
        assert operands["false_value"] == {}
        [(key, value)] = operands["true_value"].items()
        slots.append((comparison["operands"]["operand_2"], key, render(value)))
    return slots


# --- who may call --------------------------------------------------------------------------------


def test_only_the_callers_the_deployer_names_get_through() -> None:
    workflow = body(resource(LOGIC, "workflow"))
    assert workflow["properties"]["accessControl"] == {"triggers": "triggerAccessControl"}
    authentication = _variable("triggerAuthentication")
    # SAS off: the callback URL's sig= lets nobody in, only a token does.
    assert authentication["sasAuthenticationPolicy"] == {"state": "Disabled"}
    assert authentication["openAuthenticationPolicies"] == {"policies": "openAuthenticationPolicies"}

    # One AAD policy per named caller: issuer, audience and that caller's own id, all required.
    loop = parse(LOGIC)["variables"]["callerPolicies"]["value"]
    assert loop["loop_type"]["detail"] == {"item_name": "caller", "array_name": "allowedCallers"}
    policy = loop["config"]
    assert policy["type"] == "AAD"
    assert [(render(claim["name"]), render(claim["value"])) for claim in policy["claims"]] == [
        ("iss", "tokenIssuer"),
        ("aud", "tokenAudience"),
        ("caller.claim", "caller.value"),
    ]


def test_every_named_caller_gets_a_policy_and_none_is_dropped() -> None:
    slots = _conditional_slots(_variable("openAuthenticationPolicies"))
    limit = decorator(parse(LOGIC)["parameters"]["allowedCallers"], "max_length")
    assert limit == 5  # Logic Apps allows five authorization policies
    assert [(k, value) for k, _, value in slots] == [(k, f"callerPolicies[{k}]") for k in range(limit)]
    assert len({key for _, key, _ in slots}) == limit
    assert param_default(LOGIC, "allowedCallers") == []


def test_main_names_callers_by_object_id_or_app_id() -> None:
    template = parse(MAIN)
    params = body(module("logicApp"))["params"]
    assert render(params["allowedCallers"]) == "concat(frontDoorCallersByObjectId, frontDoorCallersByAppId)"
    assert (params["tokenIssuer"], params["tokenAudience"]) == ("frontDoorTokenIssuer", "frontDoorTokenAudience")
    by_object_id = template["variables"]["frontDoorCallersByObjectId"]["value"]
    by_app_id = template["variables"]["frontDoorCallersByAppId"]["value"]
    assert by_object_id["loop_type"]["detail"] == {"item_name": "id", "array_name": "frontDoorCallerObjectIds"}
    assert by_object_id["config"] == {"claim": "oid", "value": "id"}
    assert by_app_id["loop_type"]["detail"] == {"item_name": "id", "array_name": "frontDoorCallerAppIds"}
    assert by_app_id["config"] == {"claim": "frontDoorAppIdClaim", "value": "id"}
    # v1 tokens name the client app in appid, v2 tokens in azp.
    assert "var frontDoorAppIdClaim = endsWith(frontDoorTokenIssuer, '/v2.0') ? 'azp' : 'appid'" in text(MAIN)
    # Nobody is named by default; tokens of this tenant, for Resource Manager unless told otherwise.
    assert param_default(MAIN, "frontDoorCallerObjectIds") == []
    assert param_default(MAIN, "frontDoorCallerAppIds") == []
    assert "param frontDoorTokenIssuer string = 'https://sts.windows.net/${tenant().tenantId}/'" in text(MAIN)
    assert "param frontDoorTokenAudience string = environment().resourceManager" in text(MAIN)
    for name in ("frontDoorCallerObjectIds", "frontDoorCallerAppIds"):
        assert decorator(template["parameters"][name], "max_length") == 5, name


def test_caller_ip_ranges_are_optional() -> None:
    assert (
        "var triggerAccessControl = union(triggerAuthentication, empty(allowedCallerIpRanges) ? {} : "
        "{ allowedCallerIpAddresses: callerIpAddresses })" in text(LOGIC)
    )
    ranges = _variable("callerIpAddresses")
    assert ranges["loop_type"]["detail"] == {"item_name": "range", "array_name": "allowedCallerIpRanges"}
    assert ranges["config"] == {"addressRange": "range"}
    assert body(module("logicApp"))["params"]["allowedCallerIpRanges"] == "frontDoorAllowedCallerIpRanges"
    assert param_default(MAIN, "frontDoorAllowedCallerIpRanges") == []


# --- what run history keeps ----------------------------------------------------------------------

# Expressions that evaluate to the message (or to validation errors that echo it). The correlationId
# alone (`body('Validate_message')?['correlationId']`) is no message content.
_CARRIES_THE_MESSAGE = re.compile(
    r"triggerBody\(\)|triggerOutputs\(\)|body\(\\'Validate_message\\'\)(?!\?\[\\'correlationId\\'\])"
    r"|outputs\(\\'(?:Validate_message|Queue_message)\\'\)"
)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    for _, item in walk(value):
        if isinstance(item, str):
            yield item


_SECURE_INPUTS = {"secureData": {"properties": ["inputs"]}}
_SECURE_INPUTS_AND_OUTPUTS = {"secureData": {"properties": ["inputs", "outputs"]}}


def _runtime_configuration(action: dict[str, Any]) -> Any:
    return _variable(action["runtimeConfiguration"]) if "runtimeConfiguration" in action else None


def test_message_bodies_stay_out_of_run_history() -> None:
    trigger = _definition()["triggers"]["manual"]
    assert _runtime_configuration(trigger) == _SECURE_INPUTS_AND_OUTPUTS
    carriers = []
    for name, action in _actions():
        if action["type"] == "If":
            continue
        if any(_CARRIES_THE_MESSAGE.search(string) for string in _strings(action["inputs"])):
            carriers.append(name)
            # Parse JSON, Compose and Response only have "inputs", which hides their outputs too.
            inputs_only = action["type"] in {"ParseJson", "Compose", "Response"}
            expected = _SECURE_INPUTS if inputs_only else _SECURE_INPUTS_AND_OUTPUTS
            assert _runtime_configuration(action) == expected, name
    assert sorted(carriers) == ["Put_a_message_on_a_queue_(V2)", "Queue_message", "Rejected", "Validate_message"]


# --- what it validates ---------------------------------------------------------------------------


def test_the_body_is_validated_against_the_message_schema_before_it_is_queued() -> None:
    validate = _action("Validate_message")
    assert validate["type"] == "ParseJson"
    assert validate["runAfter"] == {}
    assert validate["inputs"] == {"content": "@triggerBody()", "schema": "messageSchema"}
    assert _definition()["triggers"]["manual"]["inputs"]["schema"] == "messageSchema"

    # Only a message that passed goes on: every step to the queue runs after the previous one succeeded.
    assert _run_after(_action("Correlation_id")) == {"Validate_message": ["Succeeded"]}
    assert _run_after(_action("Queue_message")) == {"Correlation_id": ["Succeeded"]}
    assert _run_after(_action("Fits_a_queue_message")) == {"Queue_message": ["Succeeded"]}
    put = _definition()["actions"]["Fits_a_queue_message"]["actions"]["'Put_a_message_on_a_queue_(V2)'"]
    assert put["runAfter"] == {}
    # What is queued is the validated body (plus its correlationId), as raw JSON text.
    assert put["inputs"]["body"] == "@{outputs(\\'Queue_message\\')}"
    assert _action("Queue_message")["inputs"] == (
        "@{string(setProperty(body(\\'Validate_message\\'), \\'correlationId\\', outputs(\\'Correlation_id\\')))}"
    )


def test_an_invalid_body_is_answered_400_with_the_reasons() -> None:
    rejected = _action("Rejected")
    assert rejected["type"] == "Response"
    assert _run_after(rejected) == {"Validate_message": ["Failed"]}
    assert rejected["inputs"]["statusCode"] == 400
    answer = rejected["inputs"]["body"]
    assert answer["error"] == "invalidMessage"
    assert answer["errors"] == "@outputs(\\'Validate_message\\')?[\\'errors\\']"
    assert "actions(\\'Validate_message\\')?[\\'error\\']?[\\'message\\']" in answer["message"]


# Keywords whose meaning is the same in draft 4 (what Parse JSON's validator is known to implement)
# and in the 2020-12 draft the schema declares. exclusiveMinimum/exclusiveMaximum changed meaning.
_PORTABLE_KEYWORDS = {
    "$schema", "title", "description", "default", "type", "enum", "pattern", "minLength", "maxLength",
    "minimum", "maximum", "multipleOf", "required", "properties", "additionalProperties", "patternProperties",
    "minProperties", "maxProperties", "items", "minItems", "maxItems", "uniqueItems", "anyOf", "allOf", "oneOf",
    "not",
}  # fmt: skip


def _keywords(schema: Any) -> Iterator[str]:
    if not isinstance(schema, dict):
        return
    yield from schema
    for key in ("properties", "patternProperties"):
        for sub in schema.get(key, {}).values():
            yield from _keywords(sub)
    for key in ("anyOf", "allOf", "oneOf"):
        for sub in schema.get(key, []):
            yield from _keywords(sub)
    for key in ("items", "additionalProperties", "not"):
        yield from _keywords(schema.get(key))


def test_the_message_schema_means_the_same_to_the_logic_app() -> None:
    schema = json.loads((REPO / "schemas" / "message.schema.json").read_text(encoding="utf-8"))
    assert set(_keywords(schema)) <= _PORTABLE_KEYWORDS, set(_keywords(schema)) - _PORTABLE_KEYWORDS


def test_a_message_too_large_for_the_queue_is_answered_413_not_503() -> None:
    """A 503 with Retry-After would have the caller retry a message that can never fit."""
    fits = _action("Fits_a_queue_message")
    assert fits["type"] == "If"
    [comparison] = [condition["lessOrEquals"] for condition in fits["expression"]["and"]]
    assert comparison == [
        "@length(base64(concat(outputs(\\'Queue_message\\'), \\'..\\')))",
        "queueMessageBase64Limit",
    ]
    too_large = fits["else"]["actions"]["Too_large"]
    assert (too_large["type"], too_large["inputs"]["statusCode"]) == ("Response", 413)
    assert too_large["inputs"]["body"]["error"] == "messageTooLarge"

    # The same test in Python: base64 of the UTF-8 text plus two bytes fits exactly when the text does.
    template = parse(LOGIC)
    assert template["variables"]["queueMessageBytes"]["value"] == QUEUE_MESSAGE_BYTES
    limit = evaluate(template["variables"]["queueMessageBase64Limit"]["value"], evaluator(template, {}))
    for size in range(QUEUE_MESSAGE_BYTES - 6, QUEUE_MESSAGE_BYTES + 7):
        for filler in ("a", "é", "€", "😀"):  # 1 to 4 UTF-8 bytes per character
            message = "a" * (size % len(filler.encode())) + filler * (size // len(filler.encode()))
            assert len(message.encode()) == size
            fits_test = len(base64.b64encode((message + "..").encode())) <= limit
            assert fits_test == (size <= QUEUE_MESSAGE_BYTES), (size, filler)


# --- what it answers -----------------------------------------------------------------------------


def test_the_caller_gets_the_correlation_id_the_outcome_will_carry() -> None:
    correlation = _action("Correlation_id")
    assert correlation["type"] == "Compose"
    assert correlation["inputs"] == (
        "@coalesce(body(\\'Validate_message\\')?[\\'correlationId\\'], workflow()[\\'run\\'][\\'name\\'])"
    )
    accepted = _action("Accepted")
    assert _run_after(accepted) == {"Put_a_message_on_a_queue_(V2)": ["Succeeded"]}
    assert accepted["inputs"]["statusCode"] == 202
    assert accepted["inputs"]["body"] == {
        "correlationId": "@outputs(\\'Correlation_id\\')",
        "messageId": "@body(\\'Put_a_message_on_a_queue_(V2)\\')?[\\'MessageId\\']",
        "runId": "@workflow()[\\'run\\'][\\'name\\']",
    }
    not_queued = _action("Not_queued")
    assert _run_after(not_queued) == {"Put_a_message_on_a_queue_(V2)": ["Failed", "TimedOut"]}
    assert not_queued["inputs"]["statusCode"] == 503
    assert "'Retry-After': '30'" in text(LOGIC)
    for name in ("Not_queued", "Too_large"):
        assert _action(name)["inputs"]["body"]["correlationId"] == "@outputs(\\'Correlation_id\\')", name


@pytest.mark.parametrize("run_name", ["08584737551867954143243946780CU57", "08585355457862011213733829536CU21"])
def test_an_assigned_correlation_id_is_one_the_contract_accepts(run_name: str) -> None:
    """Logic Apps run names (digits and letters) are valid correlationIds (docs/contract.md section 1)."""
    assert CORRELATION_ID.fullmatch(run_name)


def test_the_endpoint_output_carries_no_sas() -> None:
    endpoint = parse(LOGIC)["outputs"]["endpoint"]["value"]
    assert endpoint == "${workflow.properties.accessEndpoint}/triggers/manual/paths/invoke?api-version=2016-10-01"
    assert not re.search(r"\b(sp|sv|sig)=", endpoint)
    assert "output LOGIC_APP_ENDPOINT string = " in text(MAIN)
    assert all("listCallbackUrl" not in json.dumps(value) for _, value in walk(parse(MAIN)["outputs"]))
