"""Decoding queue bodies: raw JSON and base64 both work; everything else is a clear rejection."""

from __future__ import annotations

import base64
import json

import pytest

from shared.contract.errors import ErrorCode, MessageRejected
from shared.contract.limits import QUEUE_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shared.contract.parsing import decode_body

DOC = {"profileType": "iosScepCertificateProfile", "update": {"certificateIssuer": "Contoso CA ü"}}
TEXT = json.dumps(DOC, ensure_ascii=False)


@pytest.mark.parametrize(
    "body",
    [
        TEXT.encode(),
        base64.b64encode(TEXT.encode()),
        b"\xef\xbb\xbf" + TEXT.encode(),  # UTF-8 BOM from some producers
        b"  \n" + TEXT.encode() + b"\n",
        base64.b64encode(TEXT.encode()) + b"\n",
    ],
    ids=["raw", "base64", "bom", "whitespace", "base64-newline"],
)
def test_both_encodings_decode_to_the_same_document(body: bytes):
    assert decode_body(body) == DOC


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'"text"', "must be a JSON object, not str"),
        (b"not json at all", "not valid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (base64.b64encode(b"\xff\xfe"), "base64-decoded message is not UTF-8"),
        (base64.b64encode(b"[]"), "must be a JSON object"),
        (b"{" * 100_000, "bytes; the limit is"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "not valid JSON"),
        (b'{"a":' * 64 + b"[1]" + b"}" * 64, "nested deeper than 64 levels"),
    ],
)
def test_malformed_bodies_are_rejected_with_a_reason(body: bytes, says: str):
    with pytest.raises(MessageRejected) as caught:
        decode_body(body)
    assert caught.value.code is ErrorCode.MALFORMED_MESSAGE
    assert says in caught.value.message


def test_the_size_limit_is_64_kib_of_text():
    def sized(n: int) -> bytes:
        return b'{"k": "' + b"x" * (n - 9) + b'"}'

    assert len(sized(MAX_MESSAGE_BYTES)) == MAX_MESSAGE_BYTES
    assert decode_body(sized(MAX_MESSAGE_BYTES))["k"].startswith("x")
    with pytest.raises(MessageRejected, match="65537 bytes; the limit is 65536"):
        decode_body(sized(MAX_MESSAGE_BYTES + 1))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"a": ' + b"1" * 5000 + b"}", "an integer of 5000 digits is longer than the 4300 digits read"),
        (b'{"a": [-' + b"1" * 4301 + b"]}", "an integer of 4301 digits"),
        (b'{"a": 1e999}', "the number '1e999' is out of range"),
        (b'{"a": -1e400}', "out of range"),
        (b'{"' + b"k" * 100 + b'": 1, "' + b"k" * 100 + b'": 2}', "duplicate key 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…'"),
    ],
)
def test_numbers_python_cannot_hold_are_malformed_not_a_crash(body: bytes, says: str):
    with pytest.raises(MessageRejected) as caught:
        decode_body(body)
    assert caught.value.code is ErrorCode.MALFORMED_MESSAGE
    assert says in caught.value.message
    assert len(caught.value.message) < 200


def test_an_integer_of_4300_digits_is_still_read():
    assert decode_body(b'{"a": ' + b"1" * 4300 + b"}")["a"] > 0  # and refused later as out of Int32 range


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (rb'{"a": "\ud800"}', "a"),
        (rb'{"a": {"b": ["x", "y\udfffz"]}}', "a.b[1]"),
        (rb'{"update": {"\udbff": 1}}', "update.\udbff"),
        (base64.b64encode(rb'{"a": "\ude00"}'), "a"),
    ],
)
def test_a_lone_surrogate_is_malformed_and_named(body: bytes, field: str):
    with pytest.raises(MessageRejected) as caught:
        decode_body(body)
    assert caught.value.code is ErrorCode.MALFORMED_MESSAGE
    assert [d.field for d in caught.value.details] == [field.replace("\udbff", "\\udbff")]
    caught.value.message.encode("utf-8")  # printable: the field name shows the escape as text


@pytest.mark.parametrize("body", [rb'{"a": "\ud83d\ude00"}', rb'{"a": "\\ud800"}'], ids=["pair", "escaped-backslash"])
def test_surrogate_pairs_and_escaped_backslashes_are_text(body: bytes):
    assert decode_body(body)["a"] in {"😀", "\\ud800"}


def test_nesting_up_to_the_bound_is_still_json_the_contract_then_judges():
    assert decode_body(b'{"a":' * 63 + b"[1]" + b"}" * 63)["a"]
