"""Hypothesis strategies for the inputs that used to break the one-outcome promise (issue 11).

Each class is generated on purpose: lone surrogates, numbers Python cannot hold, final newlines and
other trailing characters, values an error message would echo (twice), near-limit sizes, and base64
of each. Messages start from a valid one and spoil one thing, so most reach deep into validation.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

STATE_ID = "d99bc884-c884-d99b-84c8-9bd984c89bd9"
VALID: dict[str, Any] = {
    "correlationId": "fuzz-1",
    "profileType": "iosScepCertificateProfile",
    "deviceConfigurationId": "b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11",
    "managedDeviceCertificateStateId": STATE_ID,
    "update": {"certificateKeyUsage": "digitalSignature", "certificateIssuer": "CN=Contoso"},
}
TEXT_FIELDS = ("correlationId", "profileType", "deviceConfigurationId", "managedDeviceCertificateStateId", "via")
UPDATE_FIELDS = (
    "certificateIssuer",  # a free string: anything goes through
    "certificateKeyUsage",  # a flags enum: quoted back in the reason
    "devicePlatform",  # an evolvable enum
    "certificateExpirationDateTime",  # DateTimeOffset
    "certificateKeyLength",  # Int32
    "id",  # must equal the state id
)

lone_surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
text_with_surrogates = (
    st.lists(st.characters() | lone_surrogate, min_size=1, max_size=12)
    .map("".join)
    .filter(lambda s: any(0xD800 <= ord(c) <= 0xDFFF for c in s))
)
control_text = st.lists(
    st.sampled_from(["\x1b[2J", "\x1b]0;title\x07", "\x9b31m", "\x7f", "\r\n", "\x00", "\u202e", "\u2066", "\u2028"])
    | st.text(max_size=4),
    min_size=1,
    max_size=8,
).map("".join)
"""Terminal escapes (ESC and 8-bit CSI sequences), DEL, line breaks and bidi controls among plain text."""
trailing = st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\x00", " ", "\t", "\u0085"])
long_text = st.builds(lambda ch, n: ch * n, st.sampled_from("xé😀'\""), st.integers(1_000, 60_000))


@st.composite
def spoiled_document(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one value (or key) replaced by a hostile one."""
    document: dict[str, Any] = json.loads(json.dumps(VALID))
    hostile = draw(text_with_surrogates | control_text | long_text | st.builds(lambda v, t: v + t, st.sampled_from(
        [STATE_ID, "fuzz-1", "..", "2027-01-01T00:00:00Z", "digitalSignature", "iOS"]), trailing))  # fmt: skip
    where = draw(st.sampled_from(["envelope", "update", "key", "many-keys", "flags"]))
    if where == "envelope":
        document[draw(st.sampled_from(TEXT_FIELDS))] = hostile
    elif where == "update":
        document["update"][draw(st.sampled_from(UPDATE_FIELDS))] = hostile
    elif where == "key":
        document["update"][hostile] = "x"
    elif where == "many-keys":
        document["update"] = {f"{hostile[:40]}{i}": i for i in range(draw(st.integers(1, 3000)))}
    else:
        document["update"]["certificateKeyUsage"] = "keyEncipherment," + hostile
    return document


@st.composite
def near_limit(draw: st.DrawFn) -> bytes:
    """A valid message padded to within a few dozen bytes of the 64 KiB limit (either side)."""
    total = draw(st.integers(65_536 - 600, 65_536 + 40))
    document = {**VALID, "dryRun": draw(st.booleans()), "update": {"certificateIssuer": ""}}
    raw = json.dumps(document).encode()
    filler = draw(st.sampled_from([b"y", "é".encode()]))
    padding = filler * max(0, (total - len(raw)) // len(filler))
    return raw.replace(b'"certificateIssuer": ""', b'"certificateIssuer": "' + padding + b'"')


def _number_text(digits: int, negative: bool) -> str:
    return ("-" if negative else "") + "9" * digits


huge_number = st.one_of(
    st.builds(_number_text, st.integers(4_290, 6_000), st.booleans()),
    st.sampled_from(["1e999", "-1e400", "1" + "0" * 400 + ".5", "123456789012345678901234567890"]),
)


@st.composite
def with_huge_number(draw: st.DrawFn) -> bytes:
    """A valid message with a number Python (or Graph) cannot hold in one place."""
    document = json.loads(json.dumps(VALID))
    where = draw(st.sampled_from(["profileType", "dryRun", "update.certificateKeyLength", "update.extra"]))
    if where.startswith("update."):
        document["update"][where.removeprefix("update.")] = "@N@"
    else:
        document[where] = "@N@"
    return json.dumps(document).replace('"@N@"', draw(huge_number)).encode()


def encodings(document: dict[str, Any]) -> list[bytes]:
    """The ways a producer could put it on the queue: escaped ASCII, raw UTF-8 (if it can be), invalid UTF-8."""
    ascii_text = json.dumps(document).encode()
    raw = json.dumps(document, ensure_ascii=False)
    try:
        utf8 = raw.encode("utf-8")
    except UnicodeEncodeError:
        utf8 = raw.encode("utf-8", "surrogatepass")  # what a careless producer sends: not UTF-8 at all
    return [ascii_text, utf8]


queue_bodies = st.one_of(
    spoiled_document().flatmap(lambda d: st.sampled_from(encodings(d))),
    near_limit(),
    with_huge_number(),
).flatmap(lambda raw: st.sampled_from([raw, base64.b64encode(raw), raw + b"\n"]))
"""Every class, as the raw body, as base64 of it, and with a final newline."""
