"""Every triple of the navigation graph, through the production pipeline, reaches the Graph simulator at its
route and succeeds; a forbidden one is rejected before any token or Graph call, and the simulator refuses it
as Graph refuses a route it has no handler for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from devstack.graph_simulator import NO_ROUTE_CODE, OWNER_INSTANCE_TYPES, GraphSimulator
from devstack.identity_emulator import IdentityEmulator, TokenClaims
from shared.contract.outcomes import Outcome
from shared.host_config import queue_options
from shared.pipeline import CertStatePipeline, Delivery
from shared.settings import Settings
from shared.wiring import build_pipeline
from tests.support.routes import TRIPLES, forbidden_triples

APP = "0b1e55ed-0000-4000-8000-0000000000a1"
CONFIGS = "/deviceManagement/deviceConfigurations"


@pytest.fixture
def graph(signing_key: bytes) -> Iterator[GraphSimulator]:
    with GraphSimulator(signing_key, write_limit=1000) as simulator:  # every triple in one window
        yield simulator


@pytest.fixture
def pipeline(graph: GraphSimulator, credential: ManagedIdentityCredential) -> CertStatePipeline:
    settings = Settings(GRAPH_BASE_URL=graph.base_url, GRAPH_WRITE_BUDGET=1000, GRAPH_MAX_ATTEMPTS=1)
    return build_pipeline(settings, queue_options(), credential)


def target(store: dict[str, Any], owner: str, navigation: str, profile_type: str) -> tuple[str, str]:
    """Ids of a stored configuration of `owner` whose `navigation` references a `profile_type`, and a state."""
    configs = {c["id"]: c for c in store["deviceConfigurations"]}
    for config in configs.values():
        reference = configs.get(config.get(f"{navigation}Id", ""), {})
        stored_type = config["@odata.type"].removeprefix("#microsoft.graph.")
        matches = reference.get("@odata.type") == f"#microsoft.graph.{profile_type}"
        if matches and stored_type in OWNER_INSTANCE_TYPES[owner]:
            return config["id"], reference["managedDeviceCertificateStates"][0]["id"]
    pytest.fail(f"graph_seed.json has no {owner} whose {navigation} is a {profile_type}")


def message(owner: str, navigation: str, profile_type: str, ids: tuple[str, str]) -> bytes:
    return json.dumps(
        {
            "profileType": profile_type,
            "deviceConfigurationId": ids[0],
            "managedDeviceCertificateStateId": ids[1],
            "via": f"{owner}/{navigation}",
            "update": {"certificateIssuanceState": "issued"},
        }
    ).encode()


def handled(pipeline: CertStatePipeline, body: bytes, message_id: str) -> Outcome:
    """The outcome of a first delivery (none of these may be deferred)."""
    result = pipeline.handle(body, Delivery(message_id, 1))
    assert result is not None
    return result.outcome


def test_every_triple_reaches_graph_at_its_route_and_succeeds(graph: GraphSimulator, pipeline: CertStatePipeline):
    store = graph.store()
    failures = []
    for number, (owner, navigation, profile_type) in enumerate(sorted(TRIPLES)):
        ids = target(store, owner, navigation, profile_type)
        outcome = handled(pipeline, message(owner, navigation, profile_type, ids), f"m-{number}")
        expected = (
            f"/beta{CONFIGS}/{ids[0]}/microsoft.graph.{owner}/{navigation}"
            f"/microsoft.graph.{profile_type}/managedDeviceCertificateStates/{ids[1]}"
        )
        sent = graph.requests()[-1]["path"]
        if (outcome.status, outcome.http_status, sent) != ("succeeded", 200, expected):
            failures.append((owner, navigation, profile_type, outcome.status, outcome.error, sent))
    assert failures == []
    assert graph.stats()["writes"] == len(TRIPLES) == 93


def test_forbidden_triples_are_rejected_with_no_token_and_no_graph_call(
    graph: GraphSimulator, identity: IdentityEmulator, pipeline: CertStatePipeline
):
    ids = ("0a0e0000-0000-4000-8000-000000000002", "57a7e000-0024-4000-8000-000000000001")
    outcomes = [
        (field, handled(pipeline, message(owner, navigation, profile_type, ids), f"f-{n}"))
        for n, (owner, navigation, profile_type, field) in enumerate(forbidden_triples())
    ]
    assert len(outcomes) == 60
    assert [(o.status.value, o.error and o.error.code, o.error and o.error.details[0].field) for _, o in outcomes] == [
        ("rejected", "validationFailed", field) for field, _ in outcomes
    ]
    assert graph.requests() == []
    assert identity.tokens_issued == 0


@pytest.mark.parametrize(("owner", "navigation", "profile_type", "field"), forbidden_triples())
def test_the_simulator_refuses_what_the_function_rejects(
    graph: GraphSimulator, signing_key: bytes, owner: str, navigation: str, profile_type: str, field: str
):
    first = next(triple for triple in sorted(TRIPLES) if triple[0] == owner)
    config, state = target(graph.store(), *first)  # real ids: it is the route that is refused
    path = (
        f"{CONFIGS}/{config}/microsoft.graph.{owner}/{navigation}/microsoft.graph.{profile_type}"
        f"/managedDeviceCertificateStates/{state}"
    )
    token = TokenClaims.issue(graph.origin, APP).sign(signing_key)
    response = requests.patch(
        graph.base_url + path, json={"certificateIssuer": "x"}, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == NO_ROUTE_CODE
