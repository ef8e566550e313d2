"""The producer library: builds exactly the given fields, validates before sending, encodes as host.json says."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from producer.sender import (
    BatchRejected,
    CertStateProducer,
    QueueNotFound,
    StorageAccount,
    StorageError,
    TargetError,
    build_message,
    default_encoding,
    default_input_queue,
    default_result_queue,
    encode,
    serialize,
    to_wire,
)
from shared.contract.errors import ErrorCode, MessageRejected
from shared.contract.messages import CertificateStateUpdate, UpdateMessage
from shared.contract.parsing import decode_body, parse_message
from tests.cli.harness import Queues
from tests.cli.samples import IOS_CONFIG, IOS_STATE, request, unreachable_connection_string

STAMP = "2027-01-01T00:02:14.9489247-08:00"


def ios(**kwargs: Any) -> UpdateMessage:
    return build_message(
        profile_type="iosScepCertificateProfile",
        device_configuration_id=IOS_CONFIG,
        managed_device_certificate_state_id=IOS_STATE,
        **{"update": {"certificateKeyUsage": "digitalSignature"}, **kwargs},
    )


# ---- building and serializing ---------------------------------------------------------------------


def test_build_message_sends_only_what_was_given_in_the_given_order():
    message = ios(update={"certificateExpirationDateTime": STAMP, "certificateKeyUsage": "digitalSignature"})
    assert serialize(message) == (
        '{"profileType":"iosScepCertificateProfile",'
        f'"deviceConfigurationId":"{IOS_CONFIG}","managedDeviceCertificateStateId":"{IOS_STATE}",'
        f'"update":{{"certificateExpirationDateTime":"{STAMP}","certificateKeyUsage":"digitalSignature"}}}}'
    )


def test_build_message_optional_fields_appear_only_when_given():
    message = ios(
        correlation_id="order-4711",
        via=None,
        expires_at=datetime(2027, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=-8))),
        dry_run=True,
    )
    wire = to_wire(message)
    assert wire["correlationId"] == "order-4711"
    assert wire["expiresAt"] == "2027-01-01T08:00:00-08:00"
    assert wire["dryRun"] is True
    assert "via" not in wire
    assert "dryRun" not in to_wire(ios())


def test_build_message_takes_a_certificate_state_update_and_keeps_nulls_that_clear():
    update = CertificateStateUpdate.model_validate({"certificateIssuer": None, "certificateKeyLength": 4096})
    assert to_wire(ios(update=update))["update"] == {"certificateIssuer": None, "certificateKeyLength": 4096}


def test_build_message_rejects_by_field():
    with pytest.raises(MessageRejected) as caught:
        ios(update={"certificateKeyLength": "2048", "certificateKeyLenght": 1}, correlation_id="has space")
    fields = {d.field for d in caught.value.details}
    assert fields == {"update.certificateKeyLength", "update.certificateKeyLenght", "correlationId"}
    assert caught.value.code is ErrorCode.VALIDATION_FAILED
    assert any("did you mean 'certificateKeyLength'" in d.message for d in caught.value.details)


def test_a_naive_datetime_is_refused_rather_than_guessed():
    with pytest.raises(MessageRejected) as caught:
        ios(expires_at=datetime(2027, 1, 1))
    assert [d.field for d in caught.value.details] == ["expiresAt"]


def test_a_datetime_offset_string_travels_unchanged_to_the_seventh_digit():
    message = ios(update={"certificateExpirationDateTime": STAMP}, expires_at="2030-01-01T00:00:00.1234567+05:30")
    text = serialize(message)
    assert STAMP in text
    assert "2030-01-01T00:00:00.1234567+05:30" in text


@pytest.mark.parametrize("encoding", ["none", "base64"])
def test_encode_is_what_the_function_decodes(encoding: Any):
    message = ios(correlation_id="c-1")
    payload = encode(message, encoding)
    assert parse_message(decode_body(payload.encode())) == message
    if encoding == "base64":
        assert base64.b64decode(payload).decode() == serialize(message)
    else:
        assert payload == serialize(message)


def test_encode_a_mapping_validates_it_and_keeps_it_as_written():
    document = {"update": {"certificateKeyUsage": "digitalSignature"}, **request("c-2")}
    assert json.loads(encode(document)) == document
    assert list(json.loads(encode(document))) == list(document)
    with pytest.raises(MessageRejected):
        encode({**document, "unknown": 1})


def test_encode_refuses_a_message_over_the_queue_limit():
    with pytest.raises(MessageRejected) as caught:
        encode(ios(update={"certificateIssuer": "x" * 60_000}), "base64")
    assert caught.value.code is ErrorCode.MALFORMED_MESSAGE
    with pytest.raises(MessageRejected):
        encode(ios(update={"certificateIssuer": "x" * 70_000}), "none")


def test_encode_refuses_a_lone_surrogate_naming_the_field_as_the_function_does():
    with pytest.raises(MessageRejected) as caught:
        encode({**request("c-3"), "update": {"certificateIssuer": "CN=\ud800"}})
    assert caught.value.code is ErrorCode.MALFORMED_MESSAGE
    assert [d.field for d in caught.value.details] == ["update.certificateIssuer"]


def test_defaults_come_from_host_json_and_the_environment(monkeypatch: pytest.MonkeyPatch):
    assert default_encoding() == "none"  # host.json: messageEncoding none
    monkeypatch.delenv("INPUT_QUEUE_NAME", raising=False)
    monkeypatch.setenv("RESULT_QUEUE_NAME", "my-results")
    assert default_input_queue() == "certificate-state-updates"
    assert default_result_queue() == "my-results"


def test_importing_the_producer_and_cli_does_not_load_the_storage_sdk():
    code = "import sys, producer.sender, producer.cli; print(sorted(m for m in sys.modules if m.startswith('azure')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


# ---- sending --------------------------------------------------------------------------------------


def test_send_puts_raw_json_on_the_queue(queues: Queues):
    message = ios(correlation_id="c-send")
    with CertStateProducer(queues.connection_string, queue_name=queues.input.queue_name) as producer:
        assert producer.message_encoding == "none"
        message_id = producer.send(message)
    [stored] = queues.input.peek_messages()
    assert stored.id == message_id
    assert stored.content == serialize(message)


def test_send_base64_when_asked(queues: Queues):
    with CertStateProducer(
        queues.connection_string, queue_name=queues.input.queue_name, message_encoding="base64"
    ) as producer:
        producer.send(request("c-b64"))
    [stored] = queues.contents(queues.input)
    assert json.loads(base64.b64decode(stored)) == request("c-b64")


def test_send_many_validates_everything_before_sending_anything(queues: Queues):
    batch: list[Any] = [request("ok-1"), {**request("bad"), "update": {}}, request("ok-2")]
    with (
        CertStateProducer(queues.connection_string, queue_name=queues.input.queue_name) as producer,
        pytest.raises(BatchRejected) as caught,
    ):
        producer.send_many(batch)
    assert [index for index, _ in caught.value.errors] == [1]
    assert queues.contents(queues.input) == []


@pytest.mark.parametrize("concurrency", [1, 8])
def test_send_many_reports_progress_and_ids(queues: Queues, concurrency: int):
    batch = [request(f"m-{i}") for i in range(25)]
    progress: list[tuple[int, int]] = []
    with CertStateProducer(
        queues.connection_string, queue_name=queues.input.queue_name, concurrency=concurrency
    ) as producer:
        summary = producer.send_many(batch, on_progress=lambda sent, total: progress.append((sent, total)))
    assert summary.sent == summary.total == 25
    assert len(set(summary.message_ids)) == 25
    assert progress[-1] == (25, 25)
    assert [sent for sent, _ in progress] == list(range(1, 26))
    stored = [json.loads(m.content) for m in queues.input.receive_messages(messages_per_page=32, max_messages=32)]
    assert sorted(m["correlationId"] for m in stored) == sorted(m["correlationId"] for m in batch)
    if concurrency == 1:
        assert [m["correlationId"] for m in stored] == [m["correlationId"] for m in batch]


def test_a_missing_queue_is_not_created_unless_asked(azurite: Any, queue_names: Any):
    name = queue_names("missing")
    with CertStateProducer(azurite.connection_string, queue_name=name) as producer, pytest.raises(QueueNotFound):
        producer.send(ios())
    with CertStateProducer(azurite.connection_string, queue_name=name, create_queue=True) as producer:
        producer.send(ios())
        assert producer.ensure_queue() is False  # exists now
    with CertStateProducer(azurite.connection_string, queue_name=name) as producer:
        assert producer.account.queue(name).get_queue_properties().approximate_message_count == 1
        producer.account.queue(name).delete_queue()


def test_send_many_on_a_missing_queue_fails_before_any_message(azurite: Any, queue_names: Any):
    with (
        CertStateProducer(azurite.connection_string, queue_name=queue_names("missing")) as producer,
        pytest.raises(QueueNotFound),
    ):
        producer.send_many([request("a"), request("b")])


def test_an_unreachable_account_fails_fast_with_one_line(closed_port: int):
    started = time.monotonic()
    with (
        CertStateProducer(unreachable_connection_string(closed_port), queue_name="q-in", retry_total=0) as producer,
        pytest.raises(StorageError) as caught,
    ):
        producer.send_many([request("a"), request("b")])
    assert time.monotonic() - started < 5
    assert caught.value.message == (
        f"cannot reach the queue service at http://127.0.0.1:{closed_port}/devstoreaccount1: Connection refused"
    )
    assert "\n" not in caught.value.message


class FakeCredential:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if self.error:
            raise self.error
        return AccessToken("fake-token", int(time.time()) + 3600)


def test_account_url_uses_the_token_credential(closed_port: int):
    account = StorageAccount(account_url=f"https://127.0.0.1:{closed_port}", credential=FakeCredential(), retry_total=0)
    with CertStateProducer(account=account, queue_name="q-in") as producer, pytest.raises(StorageError) as caught:
        producer.send(ios())
    assert caught.value.message.startswith(f"cannot reach the queue service at https://127.0.0.1:{closed_port}")


def test_a_credential_that_gives_no_token_is_a_storage_error_not_a_traceback(closed_port: int):
    credential = FakeCredential(ClientAuthenticationError("no identity here"))
    account = StorageAccount(account_url=f"https://127.0.0.1:{closed_port}", credential=credential, retry_total=0)
    with CertStateProducer(account=account, queue_name="q-in") as producer, pytest.raises(StorageError) as caught:
        producer.send(ios())
    assert "could not authenticate: no identity here" in caught.value.message


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"account_url": "http://myaccount.queue.core.windows.net"}, "must be https"),
        ({"account_url": "https://x.queue.core.windows.net?sig=secret"}, "must be https"),
        ({"connection_string": "UseDevelopmentStorage=true", "account_url": "https://x"}, "not both"),
    ],
)
def test_bad_targets_are_refused_before_any_call(kwargs: dict[str, Any], problem: str):
    with pytest.raises(TargetError, match=problem):
        StorageAccount(**kwargs)


def test_a_malformed_connection_string_is_not_echoed():
    account = StorageAccount("AccountKey=s3cr3t;garbage")
    with pytest.raises(TargetError) as caught:
        account.queue("certificate-state-updates")
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(TargetError, match="not a queue name"):
        StorageAccount().queue("Bad_Name")


def test_default_target_is_local_azurite():
    assert StorageAccount().endpoint == "http://127.0.0.1:10001/devstoreaccount1"
    assert StorageAccount(f"{unreachable_connection_string(1)}SharedAccessSignature=sig").endpoint.endswith(
        ":1/devstoreaccount1"
    )


def test_send_many_of_nothing_touches_nothing(closed_port: int):
    with CertStateProducer(unreachable_connection_string(closed_port), queue_name="q-in") as producer:
        summary = producer.send_many([])
    assert summary.sent == summary.total == 0
