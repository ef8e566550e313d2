"""The audit table's lean client (shared/tables.py): what it reads from a connection string, and how it types
and addresses rows. That Azurite accepts its transactions is tests/integration/test_audit.py's."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from azure.core.credentials import AccessToken

from shared.tables import BearerToken, SharedKey, _key, edm, entity, parse_connection_string

KEY = base64.b64encode(b"k" * 32).decode()


def test_a_connection_string_names_the_table_endpoint_and_the_account_key():
    endpoint, key = parse_connection_string(f"AccountName=acct;AccountKey={KEY};EndpointSuffix=core.usgovcloudapi.net")
    assert endpoint == "https://acct.table.core.usgovcloudapi.net"
    assert key == SharedKey("acct", b"k" * 32)
    given = f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={KEY};TableEndpoint=http://127.0.0.1:10002/a/;"
    assert parse_connection_string(given)[0] == "http://127.0.0.1:10002/a"


def test_development_storage_is_azurites_well_known_account():
    endpoint, key = parse_connection_string("UseDevelopmentStorage=true")
    assert (endpoint, key.account) == ("http://127.0.0.1:10002/devstoreaccount1", "devstoreaccount1")


def test_a_connection_string_without_an_account_key_is_refused():
    with pytest.raises(ValueError, match="no account key"):
        parse_connection_string("TableEndpoint=https://a.table.core.windows.net;SharedAccessSignature=sv=x")


def test_types_json_cannot_say_are_annotated_for_the_table_service():
    moment = datetime(2026, 12, 7, 6, 30, tzinfo=UTC)
    row = {"s": "x", "n": 204, "t": True, "at": moment, "b": b"\x00\xff", "big": 2**40, "f": 1.5, "none": None}
    assert edm(row) == {
        "s": "x", "n": 204, "t": True, "none": None,
        "at": "2026-12-07T06:30:00.000000Z", "at@odata.type": "Edm.DateTime",
        "b": "AP8=", "b@odata.type": "Edm.Binary",
        "big": str(2**40), "big@odata.type": "Edm.Int64",
        "f": 1.5, "f@odata.type": "Edm.Double",
    }  # fmt: skip


def test_keys_in_the_entity_url_are_quoted_as_odata_and_percent_encoded():
    assert _key("20261207|-") == "20261207%7C-"
    assert _key("m|a%2Fb") == "m%7Ca%252Fb"  # an encoded key part keeps its own escape
    assert _key("it's/odd") == "it%27%27s%2Fodd"
    row = entity({"PartitionKey": "p", "RowKey": "r", "status": "succeeded"})
    assert (row.partition_key, row.row_key, row.properties) == ("p", "r", '{"status":"succeeded"}')


def test_the_storage_token_is_asked_for_again_only_when_it_is_about_to_expire():
    class Credential:
        calls = 0

        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            Credential.calls += 1
            return AccessToken(f"t{Credential.calls}", 0 if Credential.calls == 1 else 2**40)

    bearer = BearerToken(Credential())
    assert bearer.headers("POST", "https://a/$batch", "x")["Authorization"] == "Bearer t1"
    assert bearer.headers("POST", "https://a/$batch", "x")["Authorization"] == "Bearer t2"  # t1 had expired
    assert bearer.headers("POST", "https://a/$batch", "x")["Authorization"] == "Bearer t2"
    assert Credential.calls == 2
