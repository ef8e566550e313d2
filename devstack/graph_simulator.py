"""Stand-in for Microsoft Graph beta's managedDeviceCertificateState routes, throttling and errors.

A real HTTP server on 127.0.0.1 that answers PATCH and GET on the route forms of docs/routes.md from an
in-memory store (default: graph_seed.json), with Graph's error bodies and headers, Intune's per-app write
limit (a sliding window per app and tenant, answered 429 with an accurate Retry-After) and injectable
faults on writes. Routing follows the navigation graph (`shared.contract.navigation`); the token's `tid`
chooses the tenant. docs/devstack.md ("The Graph simulator") describes the routing, the default store's
ids, every way the simulator differs from Graph on purpose, and its admin endpoints.

Out of process: `python -m devstack.graph_simulator --signing-key-hex K [...]` prints `GRAPH_BASE_URL=...`.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import email.utils
import json
import math
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast, get_args
from urllib.parse import unquote

from aiohttp import web

from devstack.identity_emulator import LoopbackService, TokenClaims, serve_until_signalled, verify_token
from shared.contract import navigation as nav

JsonObject = dict[str, Any]
Lane = tuple[str, str]
"""(tenant id, app id): Intune's write limit and a Retry-After apply per app per tenant."""
RetryAfterForm = Literal["seconds", "fractional", "http-date", "none"]
RETRY_AFTER_FORMS: tuple[str, ...] = get_args(RetryAfterForm)

DEFAULT_SEED_PATH = Path(__file__).with_name("graph_seed.json")
CONCURRENT_CLIENT_GRACE_S = 0.5
"""`in_flight_grace_s` for a stack whose worker sends concurrently: longer than a loopback request takes
from the client's pacing gate to this server on a loaded two-core machine, shorter than any Retry-After the
write window sets, so a client that ignores Retry-After still shows up in `earlyRetries`."""
REDIRECT_PREFIX = "/redirected"
"""Where a scripted 3xx points by default: the request's own path under this prefix."""
CAST_PREFIX = "microsoft.graph."
MDCS = "managedDeviceCertificateStates"
ENTITY_ODATA_TYPE = "#microsoft.graph.managedDeviceCertificateState"
NO_ROUTE_CODE = "No method match route template"  # Graph's error code for a route it has no handler for
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PROFILE_TYPES = frozenset(nav.PROFILE_TYPES)
"""The types that carry `managedDeviceCertificateStates` (graph-facts.md section 2)."""
KNOWN_TYPES = PROFILE_TYPES | set(nav.OWNER_NAVIGATIONS)
"""The types a cast segment may name here; any other cast is a segment Graph would not find."""
OWNER_INSTANCE_TYPES = {
    owner: frozenset({owner, *(sub for sub, base in nav.INHERITING_OWNERS.items() if base == owner)})
    for owner in nav.OWNER_NAVIGATIONS
}
"""Owner type -> the types whose instances a cast to it matches: itself and its subtypes."""

_ENUMS: dict[str, tuple[tuple[str, ...], bool]] = {
    "certificateIssuanceStates": (
        (
            "unknown", "challengeIssued", "challengeIssueFailed", "requestCreationFailed", "requestSubmitFailed",
            "challengeValidationSucceeded", "challengeValidationFailed", "issueFailed", "issuePending", "issued",
            "responseProcessingFailed", "responsePending", "enrollmentSucceeded", "enrollmentNotNeeded", "revoked",
            "removedFromCollection", "renewVerified", "installFailed", "installed", "deleteFailed", "deleted",
            "renewalRequested", "requested",
        ),
        False,
    ),
    "certificateRevocationStatus": (("none", "pending", "issued", "failed", "revoked"), False),
    "certificateValidityPeriodScale": (("days", "months", "years"), False),
    "devicePlatformType": (
        (
            "android", "androidForWork", "iOS", "macOS", "windowsPhone81", "windows81AndLater", "windows10AndLater",
            "androidWorkProfile", "unknown", "androidAOSP", "androidMobileApplicationManagement",
            "iOSMobileApplicationManagement", "unknownFutureValue", "windowsMobileApplicationManagement",
        ),
        False,
    ),
    "keyStorageProviderOption": (
        (
            "useTpmKspOtherwiseUseSoftwareKsp", "useTpmKspOtherwiseFail", "usePassportForWorkKspOtherwiseFail",
            "useSoftwareKsp",
        ),
        False,
    ),
    "keyUsages": (("keyEncipherment", "digitalSignature"), True),
    "subjectAlternativeNameType": (
        (
            "none", "emailAddress", "userPrincipalName", "customAzureADAttribute", "domainNameService",
            "universalResourceIdentifier",
        ),
        True,
    ),
    "subjectNameFormat": (
        (
            "commonName", "commonNameIncludingEmail", "commonNameAsEmail", "custom", "commonNameAsIMEI",
            "commonNameAsSerialNumber", "commonNameAsAadDeviceId", "commonNameAsIntuneDeviceId",
            "commonNameAsDurableDeviceId",
        ),
        False,
    ),
}  # fmt: skip
"""Member names in declaration order, and whether the enum is a flags enum (graph-schema.json)."""

_STRING, _INT32, _DATETIME = "Edm.String", "Edm.Int32", "Edm.DateTimeOffset"
PROPERTIES: dict[str, tuple[str, bool]] = {
    "id": (_STRING, False),
    "certificateEnhancedKeyUsage": (_STRING, True),
    "certificateErrorCode": (_INT32, False),
    "certificateExpirationDateTime": (_DATETIME, False),
    "certificateIssuanceDateTime": (_DATETIME, False),
    "certificateIssuanceState": ("certificateIssuanceStates", False),
    "certificateIssuer": (_STRING, True),
    "certificateKeyLength": (_INT32, False),
    "certificateKeyStorageProvider": ("keyStorageProviderOption", False),
    "certificateKeyUsage": ("keyUsages", False),
    "certificateLastIssuanceStateChangedDateTime": (_DATETIME, False),
    "certificateProfileDisplayName": (_STRING, True),
    "certificateRevokeStatus": ("certificateRevocationStatus", False),
    "certificateSerialNumber": (_STRING, True),
    "certificateSubjectAlternativeNameFormat": ("subjectAlternativeNameType", False),
    "certificateSubjectAlternativeNameFormatString": (_STRING, True),
    "certificateSubjectNameFormat": ("subjectNameFormat", False),
    "certificateSubjectNameFormatString": (_STRING, True),
    "certificateThumbprint": (_STRING, True),
    "certificateValidityPeriod": (_INT32, False),
    "certificateValidityPeriodUnits": ("certificateValidityPeriodScale", False),
    "deviceDisplayName": (_STRING, True),
    "devicePlatform": ("devicePlatformType", False),
    "lastCertificateStateChangeDateTime": (_DATETIME, False),
    "userDisplayName": (_STRING, True),
    # The seed page's names, gone from the current schema; accepted so the contract's pass-through is testable.
    "serverUrl": (_STRING, True),
    "enhancedKeyUsage": (_STRING, True),
}
"""Property name -> (type, nullable): the current beta schema's 24 plus `id` and the two legacy names."""

_DATETIME_OFFSET = re.compile(  # OData's dateTimeOffsetValue: a fraction only after the seconds, ASCII digits
    r"(?P<base>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.(?P<fraction>[0-9]{1,7}))?)?)"
    r"(?P<offset>Z|[+-][0-9]{2}:[0-9]{2})"
)
_MAX_OFFSET = timedelta(hours=14)  # .NET's DateTimeOffset (Graph's) holds no offset beyond +-14:00
_INCLUDE_UNKNOWN = "include-unknown-enum-members"
_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-identity-header"})
_SUCCESS_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
_DIAGNOSTIC = json.dumps(
    {"ServerInfo": {"DataCenter": "Loopback", "Slice": "E", "Ring": "0", "ScaleUnit": "0", "RoleInstance": "devstack"}},
    separators=(",", ":"),
)
_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    'client_id="00000003-0000-0000-c000-000000000000"'
)
_ERROR_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Forbidden",
    404: "ResourceNotFound",
    405: "BadRequest",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


# --------------------------------------------------------------------------------------------------
# Faults and throttling configuration


@dataclass(frozen=True)
class ScriptStep:
    """One forced answer for the next write, and how it is delivered.

    `status`: 200 behaves normally; another 2xx (202, 204) is answered with an empty body and changes
    nothing; a 3xx redirects to `location` (default: the request's path under `/redirected`, which this
    server answers like any unknown route, so a client that follows it shows up in the log), changing
    nothing; 4xx/5xx is an error. `drop` closes the connection instead. `trickle_s` sends the answer's
    body one byte every that many seconds; `body_bytes` pads the body (with JSON whitespace) to that size.
    """

    status: int = 200
    retry_after: str | None = None
    drop: bool = False
    trickle_s: float | None = None
    body_bytes: int | None = None
    location: str | None = None

    _KEYS = frozenset({"status", "retryAfter", "drop", "trickleSeconds", "bodyBytes", "location"})

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ScriptStep:
        """Read `{"status", "retryAfter", "drop", "trickleSeconds", "bodyBytes", "location"}`; else ValueError."""
        unknown = set(raw) - cls._KEYS
        if unknown:
            msg = f"unknown script keys {sorted(unknown)}"
            raise ValueError(msg)
        status, retry_after, drop = raw.get("status", 200), raw.get("retryAfter"), raw.get("drop", False)
        answerable = isinstance(status, int) and 200 <= status < 600
        if not isinstance(drop, bool) or not answerable:
            msg = f"a script step needs a status of 2xx-5xx, or drop: true; got {dict(raw)}"
            raise ValueError(msg)
        if retry_after is not None and not isinstance(retry_after, str | int | float):
            msg = f"retryAfter must be a string or a number; got {retry_after!r}"
            raise ValueError(msg)
        location = raw.get("location")
        if location is not None and not (isinstance(location, str) and 300 <= status < 400):
            msg = f"location must be a string, and only with a 3xx status; got {dict(raw)}"
            raise ValueError(msg)
        trickle, size = raw.get("trickleSeconds"), raw.get("bodyBytes")
        if trickle is not None and (not isinstance(trickle, int | float) or trickle <= 0):
            msg = f"trickleSeconds must be a number > 0; got {trickle!r}"
            raise ValueError(msg)
        if size is not None and (not isinstance(size, int) or size < 0):
            msg = f"bodyBytes must be an integer >= 0; got {size!r}"
            raise ValueError(msg)
        return cls(
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            drop=drop,
            trickle_s=None if trickle is None else float(trickle),
            body_bytes=size,
            location=location,
        )


@dataclass(frozen=True)
class SimulatorConfig:
    """Throttling and fault knobs; `GraphSimulator.configure` and `POST /_admin/faults` replace fields."""

    write_limit: int = 100
    write_window_s: float = 20.0
    retry_after_form: RetryAfterForm = "seconds"
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    error_retry_after_s: float | None = None
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    script: tuple[ScriptStep, ...] = ()
    in_flight_grace_s: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "write_limit must be >= 1": self.write_limit >= 1,
            "write_window_s must be > 0": self.write_window_s > 0,
            f"retry_after_form must be one of {RETRY_AFTER_FORMS}": self.retry_after_form in RETRY_AFTER_FORMS,
            "error_rate and drop_rate must be within [0, 1]": 0 <= self.error_rate <= 1 and 0 <= self.drop_rate <= 1,
            "error_statuses must be 4xx/5xx codes": all(400 <= s < 600 for s in self.error_statuses),
            "latency_ms must be >= 0": self.latency_ms >= 0,
            "in_flight_grace_s must be >= 0": self.in_flight_grace_s >= 0,
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ValueError("; ".join(problems))


_ADMIN_KEYS = {
    "writeLimit": "write_limit",
    "writeWindowSeconds": "write_window_s",
    "retryAfterForm": "retry_after_form",
    "errorRate": "error_rate",
    "errorStatuses": "error_statuses",
    "errorRetryAfter": "error_retry_after_s",
    "latencyMs": "latency_ms",
    "dropRate": "drop_rate",
    "script": "script",
    "inFlightGraceSeconds": "in_flight_grace_s",
}


# --------------------------------------------------------------------------------------------------
# Routes, store and validation


@dataclass(frozen=True)
class _Route:
    config_id: str
    owner_type: str | None  # the owner cast of a `via` route (none for the seed page's hop)
    navigation: str | None  # the certificate navigation of a `via` route
    profile_type: str
    state_id: str
    casts: str  # the segments between the configuration id and the state id, for @odata.context


@dataclass
class _Config:
    fields: JsonObject
    states: dict[str, JsonObject]

    @property
    def type(self) -> str:
        return str(self.fields.get("@odata.type", "")).removeprefix("#" + CAST_PREFIX)


class _NotFoundError(Exception):
    """A well-formed route that names nothing in the store (Graph answers 404)."""


class _RouteError(Exception):
    """A path Graph has no route for: it answers 400 with this message and `code`."""

    code = "BadRequest"


class _BadSegmentError(_RouteError):
    """A path segment Graph would not find."""

    def __init__(self, segment: str) -> None:
        super().__init__(f"Resource not found for the segment '{segment}'.")


class _NoRouteError(_RouteError):
    """Known segments in a combination the metadata forbids (a cast it does not allow, a navigation not there)."""

    code = NO_ROUTE_CODE


class _PathWalker:
    """Consumes a request path segment by segment, naming the first one that does not fit."""

    def __init__(self, raw_path: str) -> None:
        self.segments = [unquote(segment) for segment in raw_path.split("/")[1:]]
        self.position = 0

    def peek(self) -> str | None:
        return self.segments[self.position] if self.position < len(self.segments) else None

    def take(self, fits: Callable[[str], bool]) -> str:
        segment = self.peek()
        if segment is None:
            raise _BadSegmentError(self.segments[-1])
        if not fits(segment):
            raise _BadSegmentError(segment)
        self.position += 1
        return segment

    def take_literal(self, literal: str) -> str:
        return self.take(lambda segment: segment == literal)


def _cast_of(segment: str | None) -> str:
    """The type a `microsoft.graph.<type>` segment casts to, or "" for any other segment."""
    return segment.removeprefix(CAST_PREFIX) if segment and segment.startswith(CAST_PREFIX) else ""


def _allowed(owner: str, navigation: str, profile_type: str) -> bool:
    """Whether the navigation graph has the triple (owner, navigation, profile type)."""
    return profile_type in nav.VIA_PROFILE_TYPES.get(f"{owner}/{navigation}", ())


def _known_segment(segment: str) -> bool:
    return _cast_of(segment) in KNOWN_TYPES or segment in nav.NAVIGATIONS


def _parse_route(raw_path: str, method: str) -> _Route:
    """Parse a route of docs/routes.md.

    Raises _BadSegmentError naming the first segment Graph would not know, or _NoRouteError when known
    segments form no route the navigation graph allows (a forbidden cast, a navigation its owner lacks).
    """
    walker = _PathWalker(raw_path)
    for literal in ("beta", "deviceManagement", "deviceConfigurations"):
        walker.take_literal(literal)
    config_id = walker.take(bool)
    middle: list[str] = []
    while walker.peek() not in (None, MDCS):
        middle.append(walker.take(_known_segment))
    walker.take_literal(MDCS)
    state_id = walker.take(bool)
    if walker.peek() is not None:
        raise _BadSegmentError(walker.segments[walker.position])
    types = [_cast_of(segment) for segment in middle]
    if len(middle) == 1 and types[0] in PROFILE_TYPES:
        owner, navigation = None, None
    elif len(middle) == 2 and middle[0] == nav.SEED_HOP and types[1] in nav.VIA_PROFILE_TYPES[nav.SEED_HOP]:
        owner, navigation = None, nav.SEED_HOP
    elif len(middle) == 3 and _allowed(types[0], middle[1], types[2]):
        owner, navigation = types[0], middle[1]
    else:
        kinds = "/".join("cast" if kind else "navigation" for kind in types)
        raise _NoRouteError(
            f"No OData route exists that match template ~/singleton/navigation/key/{kinds}/navigation/key with "
            f"http verb {method} for request /StatelessDeviceConfigurationFEService/deviceManagement/"
            f"deviceConfigurations('{config_id}')/{'/'.join(middle)}/{MDCS}('{state_id}')."
        )
    return _Route(config_id, owner, navigation, types[-1], state_id, casts="/".join([*middle, MDCS]))


def _invalid_update(body: JsonObject, state_id: str, include_unknown_members: bool) -> str | None:
    """Why Graph would refuse this PATCH body, or None; modest, see the module docstring."""
    for name, value in body.items():
        if name == "@odata.type":
            if value != ENTITY_ODATA_TYPE:
                return f"A type named '{value}' could not be resolved by the model."
            continue
        if name not in PROPERTIES:
            return (
                f"The property '{name}' does not exist on type 'microsoft.graph.managedDeviceCertificateState'. "
                "Make sure to only use property names that are defined by the type or mark the type as open type."
            )
        kind, nullable = PROPERTIES[name]
        if value is None:
            if nullable:
                continue
            return (
                f"A null value was found for the property named '{name}', which has the expected type "
                f"'{kind}[Nullable=False]'. The expected type '{kind}[Nullable=False]' does not allow null values."
            )
        problem = _invalid_value(kind, value, include_unknown_members)
        if problem:
            return f"Cannot convert the literal '{value}' to the expected type '{kind}' of '{name}': {problem}"
        if name == "id" and value != state_id:
            return f"The key in the request body ('{value}') does not match the key in the URL ('{state_id}')."
    return None


def _invalid_value(kind: str, value: object, include_unknown_members: bool) -> str | None:
    if kind == _INT32:
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31
        return None if ok else "not an Int32"
    if not isinstance(value, str):
        return "not a string"
    if kind == _STRING:
        return None
    if kind == _DATETIME:
        return _invalid_datetime(value)
    return _invalid_member(kind, value, include_unknown_members)


def _invalid_member(kind: str, value: str, include_unknown_members: bool) -> str | None:
    """Check member names (flags enums: comma-separated).

    Evolvable enums hide the members after `unknownFutureValue` unless the client opts in, as Graph does.
    """
    members, flags = _ENUMS[kind]
    sentinel = members.index("unknownFutureValue") if "unknownFutureValue" in members else len(members)
    for name in [part.strip() for part in value.split(",")] if flags else [value]:
        if name not in members or name == "unknownFutureValue":
            return f"'{name}' is not a member of the enum"
        if members.index(name) > sentinel and not include_unknown_members:
            return f"'{name}' needs the request header 'Prefer: {_INCLUDE_UNKNOWN}'"
    return None


def _invalid_datetime(value: str) -> str | None:
    match = _DATETIME_OFFSET.fullmatch(value)
    if match is None:
        return "not an ISO 8601 date and time with an offset and at most 7 fractional digits"
    try:
        moment = datetime.fromisoformat(match["base"] + ("+00:00" if match["offset"] == "Z" else match["offset"]))
        offset = moment.utcoffset()
        if offset is None or abs(offset) > _MAX_OFFSET or match["base"].startswith("0000"):
            return "the offset must be within +-14:00 and the year 0001-9999"
        moment.astimezone(UTC)
    except ValueError:
        return "not a valid calendar date and time"
    except OverflowError:
        return "outside the years 0001-9999 in UTC"
    return None


def _load_store(seed: Mapping[str, Any]) -> dict[str, _Config]:
    """Index a seed document by configuration id; raise ValueError on a malformed seed."""
    configs = seed.get("deviceConfigurations")
    if not isinstance(configs, list):
        msg = "a seed needs a deviceConfigurations list"
        raise ValueError(msg)
    store: dict[str, _Config] = {}
    for raw in configs:
        fields = {k: copy.deepcopy(v) for k, v in raw.items() if k != "managedDeviceCertificateStates"}
        odata_type = str(fields.get("@odata.type", ""))
        if not isinstance(fields.get("id"), str) or not odata_type.startswith("#" + CAST_PREFIX):
            msg = f"every configuration needs an id and an @odata.type of #microsoft.graph.<type>: {fields}"
            raise ValueError(msg)
        states = {s.get("id"): copy.deepcopy(s) for s in raw.get("managedDeviceCertificateStates", [])}
        if not all(isinstance(state_id, str) and state_id for state_id in states):
            msg = f"every state of configuration {fields['id']} needs a string id"
            raise ValueError(msg)
        store[fields["id"]] = _Config(fields=fields, states=states)
    for config in store.values():
        for navigation in nav.NAVIGATIONS:
            target = config.fields.get(_reference(navigation))
            profile = store.get(str(target)) if target is not None else None
            if target is not None and (profile is None or not _allowed(config.type, navigation, profile.type)):
                msg = f"{config.fields['id']}: a {config.type}'s {navigation} cannot be {target!r}"
                raise ValueError(msg)
    return store


def _reference(navigation: str) -> str:
    """The seed field naming the profile a configuration's `navigation` points to."""
    return f"{navigation}Id"


def _default_seed() -> JsonObject:
    return cast(JsonObject, json.loads(DEFAULT_SEED_PATH.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------------
# Answers


@dataclass
class _Arrival:
    """The per-request identifiers and clock readings every answer and log record carries."""

    request_id: str
    client_request_id: str
    arrived_mono: float
    arrived_wall: float

    def headers(self, content_type: str = "application/json") -> dict[str, str]:
        return {
            "request-id": self.request_id,
            "client-request-id": self.client_request_id,
            "Date": email.utils.formatdate(self.arrived_wall, usegmt=True),
            "x-ms-ags-diagnostic": _DIAGNOSTIC,
            "Content-Type": content_type,
        }

    def inner_error(self) -> JsonObject:
        return {
            "date": datetime.fromtimestamp(self.arrived_wall, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": self.request_id,
            "client-request-id": self.client_request_id,
        }


@dataclass
class _Answer:
    status: int | None  # None: drop the connection
    body: JsonObject | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str | None = None  # why it was answered so: "early", "inFlight", "throttled", "script", "random"
    counted: bool = False  # counted against the app's write limit
    early_by_s: float | None = None
    trickle_s: float | None = None  # from a script step: see ScriptStep
    body_bytes: int | None = None


_NOTE_COUNTERS = {
    "throttled": "throttled",
    "early": "earlyRetries",
    "inFlight": "inFlight",
    "crossTenant": "crossTenant",
}
"""An answer's note -> the counter it adds to, in `stats()` and in each tenant's `byTenant` entry."""


def _counted_status(status: int) -> bool:
    """Whether a write answered `status` counts against the write limit: served or refused, not throttled."""
    return status < 300 or (400 <= status < 500 and status != 429)


def _count_answer(counters: Counter[str], answer: _Answer) -> None:
    """The counts `stats()` keeps both overall and per tenant (every key present, zero or not)."""
    counters["writes"] += answer.counted
    for note, name in _NOTE_COUNTERS.items():
        counters[name] += answer.note == note


class _RetryDeadline(NamedTuple):
    """A Retry-After in force for one app in one tenant: until when, in which form, set when."""

    until: float
    form: RetryAfterForm
    issued: float


_CONFIGURATIONS = "/beta/deviceManagement/deviceConfigurations"
_ROLE_MISSING = (
    "Application is not authorized to perform this operation. Application must have one of the following scopes: "
    "DeviceManagementConfiguration.Read.All, DeviceManagementConfiguration.ReadWrite.All - Operation ID (for customer "
    "support): 00000000-0000-0000-0000-000000000000"
)


def _error(arrival: _Arrival, status: int, message: str, code: str | None = None) -> _Answer:
    inner = arrival.inner_error()
    if status == 429:
        inner = {"code": "429", **inner, "message": "Please retry after", "status": "429"}
    code = code or _ERROR_CODES.get(status, "UnknownError")
    return _Answer(status, {"error": {"code": code, "message": message, "innerError": inner}})


def _format_retry_after(delay_s: float, form: RetryAfterForm, wall_now: float) -> str | None:
    """Render a wait, always rounded up, so a client that obeys it is never early."""
    if form == "none":
        return None
    if form == "seconds":
        return str(max(1, math.ceil(delay_s)))
    if form == "fractional":
        return f"{math.ceil(delay_s * 1000) / 1000:.3f}"
    return email.utils.formatdate(math.ceil(wall_now + delay_s), usegmt=True)


def _parse_retry_after(value: str, mono_now: float, wall_now: float) -> tuple[float, RetryAfterForm] | None:
    """The monotonic deadline a Retry-After value sets, and its form; None if unreadable."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return mono_now + when.timestamp() - wall_now, "http-date"
    return mono_now + seconds, "seconds" if value.strip().isdigit() else "fractional"


# --------------------------------------------------------------------------------------------------
# The simulator


class GraphSimulator(LoopbackService):
    """Microsoft Graph beta's managedDeviceCertificateState routes on loopback; see the module docstring."""

    def __init__(
        self,
        signing_key: bytes,
        *,
        seed: Mapping[str, Any] | None = None,
        write_limit: int = 100,
        write_window_s: float = 20.0,
        retry_after_form: RetryAfterForm = "seconds",
        error_rate: float = 0.0,
        error_statuses: Iterable[int] = (500, 502, 503, 504),
        error_retry_after_s: float | None = None,
        latency_ms: float = 0.0,
        drop_rate: float = 0.0,
        script: Iterable[Mapping[str, Any]] = (),
        in_flight_grace_s: float = 0.0,
        rng_seed: int = 0,
        port: int = 0,
    ) -> None:
        self._signing_key = signing_key
        self._lock = threading.Lock()
        self._config = SimulatorConfig(
            write_limit=write_limit,
            write_window_s=write_window_s,
            retry_after_form=retry_after_form,
            error_rate=error_rate,
            error_statuses=tuple(error_statuses),
            error_retry_after_s=error_retry_after_s,
            latency_ms=latency_ms,
            drop_rate=drop_rate,
            script=tuple(ScriptStep.parse(step) for step in script),
            in_flight_grace_s=in_flight_grace_s,
        )
        self._script: deque[ScriptStep] = deque(self._config.script)
        self._rng = random.Random(rng_seed)  # noqa: S311 - fault injection, not cryptography
        self._seed = seed
        self._store = _load_store(seed if seed is not None else _default_seed())
        self._tenant_stores: dict[str, dict[str, _Config]] = {}
        self._tenant_write_limits: dict[str, int] = {}
        self._roles_missing: set[str] = set()
        self._tokens_not_before = 0.0
        self._writes: dict[Lane, deque[float]] = {}
        self._retry_deadlines: dict[Lane, _RetryDeadline] = {}
        self._tenant_counters: dict[str, Counter[str]] = {}
        self._log: list[JsonObject] = []
        self._counters: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._tokens_seen: set[str] = set()
        self._apps_seen: set[str] = set()
        self._peak_window_writes = 0
        super().__init__(port, "graph-simulator")

    @property
    def base_url(self) -> str:
        """The GRAPH_BASE_URL value."""
        return f"{self.origin}/beta"

    # ---- control from the test thread -------------------------------------------------------------

    def configure(self, **changes: Any) -> None:  # noqa: ANN401 - forwards to dataclasses.replace
        """Replace `SimulatorConfig` fields (e.g. `error_rate=0.2`, `script=[{"status": 503}]`, `rng_seed=7`).

        A new `script` replaces the steps not yet used; `rng_seed` restarts the fault RNG.
        """
        rng_seed = changes.pop("rng_seed", None)
        if "script" in changes:
            changes["script"] = tuple(ScriptStep.parse(step) for step in changes["script"])
        if "error_statuses" in changes:
            changes["error_statuses"] = tuple(changes["error_statuses"])
        with self._lock:
            self._config = replace(self._config, **changes)  # validates before anything else changes
            if "script" in changes:
                self._script = deque(self._config.script)
            if rng_seed is not None:
                self._rng.seed(rng_seed)

    @property
    def config(self) -> SimulatorConfig:
        """The knobs in force."""
        with self._lock:
            return self._config

    def add_tenant(
        self, tenant_id: str, *, seed: Mapping[str, Any] | None = None, write_limit: int | None = None
    ) -> None:
        """Give tokens with `tid` = `tenant_id` their own store and, if given, their own write limit.

        The store is a copy of `seed` (default: the simulator's). A low `write_limit` plays a tenant
        that other tools keep busy. Tokens of any other tenant share the default store and limit.
        """
        store = _load_store(seed if seed is not None else (self._seed or _default_seed()))
        if write_limit is not None and write_limit < 1:
            msg = "write_limit must be >= 1"
            raise ValueError(msg)
        with self._lock:
            self._tenant_stores[tenant_id] = store
            if write_limit is None:
                self._tenant_write_limits.pop(tenant_id, None)
            else:
                self._tenant_write_limits[tenant_id] = write_limit

    def remove_app_role(self, tenant_id: str, removed: bool = True) -> None:
        """Play a tenant that consented without granting DeviceManagementConfiguration.ReadWrite.All: 403 to reads."""
        with self._lock:
            (self._roles_missing.add if removed else self._roles_missing.discard)(tenant_id.lower())

    def expire_tokens_issued_before(self, timestamp: float) -> None:
        """Answer 401 to tokens issued before `timestamp` (epoch seconds) even while they are unexpired."""
        with self._lock:
            self._tokens_not_before = max(self._tokens_not_before, timestamp)

    def revoke_all_tokens(self) -> None:
        """Answer 401 to every token issued so far; the next fresh token works."""
        self.expire_tokens_issued_before(time.time())

    def reseed(self, seed: Mapping[str, Any] | None = None) -> None:
        """Replace the store with `seed` (default: graph_seed.json)."""
        store = _load_store(seed if seed is not None else _default_seed())
        with self._lock:
            self._store = store

    def store(self, tenant_id: str | None = None) -> JsonObject:
        """A deep copy of the store (of an added tenant, if named), in the seed's shape."""
        with self._lock:
            store = self._store if tenant_id is None else self._tenant_stores[tenant_id]
            return {
                "deviceConfigurations": [
                    {**c.fields, "managedDeviceCertificateStates": list(c.states.values())}
                    for c in copy.deepcopy(list(store.values()))
                ]
            }

    def requests(self) -> list[JsonObject]:
        """Every Graph request so far (admin calls excluded), oldest first, without secret headers."""
        with self._lock:
            return copy.deepcopy(self._log)

    def stats(self) -> JsonObject:
        """Counters since the last reset; `byStatus` keys are strings so the dict survives JSON."""
        with self._lock:
            return {
                "requests": self._counters["requests"],
                "writes": self._counters["writes"],
                "byStatus": {str(status): n for status, n in sorted(self._statuses.items())},
                "throttled": self._counters["throttled"],
                "earlyRetries": self._counters["earlyRetries"],
                "inFlight": self._counters["inFlight"],
                "dropped": self._counters["dropped"],
                "faultsInjected": self._counters["faultsInjected"],
                "unauthorized": self._counters["unauthorized"],
                "crossTenant": self._counters["crossTenant"],
                "tokensSeen": len(self._tokens_seen),
                "appIds": sorted(self._apps_seen),
                "peakWindowWrites": self._peak_window_writes,
                "byTenant": {tid: dict(sorted(c.items())) for tid, c in sorted(self._tenant_counters.items())},
            }

    def reset_stats(self) -> None:
        """Clear counters and the request log; throttling state and the store stay."""
        with self._lock:
            self._log.clear()
            self._counters.clear()
            self._statuses.clear()
            self._tokens_seen.clear()
            self._apps_seen.clear()
            self._peak_window_writes = 0
            self._tenant_counters.clear()

    def reset_throttling(self) -> None:
        """Forget counted writes and pending Retry-After deadlines."""
        with self._lock:
            self._writes.clear()
            self._retry_deadlines.clear()

    # ---- HTTP ------------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_admin/stats", self._admin_stats)
        app.router.add_get("/_admin/requests", self._admin_requests)
        app.router.add_get("/_admin/store", self._admin_store)
        app.router.add_post("/_admin/reset", self._admin_reset)
        app.router.add_post("/_admin/faults", self._admin_faults)
        app.router.add_post("/_admin/seed", self._admin_seed)
        app.router.add_post("/_admin/revoke-tokens", self._admin_revoke)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._graph)  # any path, even with an encoded newline
        return app

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        arrival = _Arrival(
            request_id=str(uuid.uuid4()),
            client_request_id=request.headers.get("client-request-id") or str(uuid.uuid4()),
            arrived_mono=time.monotonic(),
            arrived_wall=time.time(),
        )
        raw_body = await request.read()
        with self._lock:
            claims = self._authenticate(request)
            answer = self._decide(request, arrival, raw_body, claims)
            self._record(request, arrival, raw_body, claims, answer)
            latency_s = self._config.latency_ms / 1000
        if latency_s:
            await asyncio.sleep(latency_s)
        if answer.status is None:
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never sent: the connection is gone
        content_type = _SUCCESS_CONTENT_TYPE if answer.status < 300 else "application/json"
        body = b"" if answer.body is None else json.dumps(answer.body).encode()
        headers = {**arrival.headers(content_type), **answer.headers}
        if answer.trickle_s is None and answer.body_bytes is None:
            return web.Response(status=answer.status, body=body, headers=headers)
        return await _shaped(request, answer, body, headers)

    def _authenticate(self, request: web.Request) -> TokenClaims | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        claims = verify_token(token.strip(), self._signing_key, self.origin)
        if claims is None or claims.iat < self._tokens_not_before:
            return None
        return claims

    def _decide(self, request: web.Request, arrival: _Arrival, raw_body: bytes, claims: TokenClaims | None) -> _Answer:
        """Choose the answer (lock held): auth, early retry, faults, write limit, then the resource itself."""
        if claims is None:
            empty = not request.headers.get("Authorization", "").partition(" ")[2].strip()
            message = "Access token is empty." if empty else "Access token validation failure."
            answer = _error(arrival, 401, message)
            answer.headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
            return answer
        app = (claims.tid, claims.appid)
        deadline = self._retry_deadlines.get(app)
        if deadline is not None and arrival.arrived_mono < deadline.until:
            left = deadline.until - arrival.arrived_mono
            answer = self._throttled(arrival, left, deadline.form)
            in_flight = arrival.arrived_mono - deadline.issued < self._config.in_flight_grace_s
            answer.note, answer.early_by_s = "inFlight" if in_flight else "early", left
            return answer
        is_write = request.method in WRITE_METHODS
        step = self._script.popleft() if is_write and self._script else None
        answer = (
            (self._injected_fault(arrival, step, request.rel_url.raw_path) if is_write else None)
            or self._within_limit(app, arrival, is_write)
            or self._list_configurations(request, arrival, claims.tid)
            or self._serve(request, arrival, raw_body, claims.tid)
        )
        if step is not None:
            answer.trickle_s, answer.body_bytes = step.trickle_s, step.body_bytes
        if answer.status in (429, 503) and "Retry-After" in answer.headers:
            parsed = _parse_retry_after(answer.headers["Retry-After"], arrival.arrived_mono, arrival.arrived_wall)
            if parsed is not None and answer.note != "throttled":
                self._retry_deadlines[app] = _RetryDeadline(*parsed, issued=arrival.arrived_mono)
        if is_write and answer.status is not None and _counted_status(answer.status):
            window = self._window(app, arrival.arrived_mono)
            window.append(arrival.arrived_mono)
            self._peak_window_writes = max(self._peak_window_writes, len(window))
            tenant = self._tenant_counters.setdefault(claims.tid, Counter())
            tenant["peakWindowWrites"] = max(tenant["peakWindowWrites"], len(window))
            answer.counted = True
        return answer

    def _window(self, app: Lane, now: float) -> deque[float]:
        """The app's counted writes still inside the sliding window at `now`."""
        window = self._writes.setdefault(app, deque())
        while window and window[0] <= now - self._config.write_window_s:
            window.popleft()
        return window

    def _throttled(self, arrival: _Arrival, delay_s: float, form: RetryAfterForm) -> _Answer:
        answer = _error(arrival, 429, "Please retry again later.")
        value = _format_retry_after(delay_s, form, arrival.arrived_wall)
        if value is not None:
            answer.headers["Retry-After"] = value
        return answer

    def _injected_fault(self, arrival: _Arrival, step: ScriptStep | None, path: str) -> _Answer | None:
        """The script step taken for this write, else a random drop or error, else None (behave normally)."""
        if step is not None:
            return _scripted(arrival, step, path)
        config = self._config
        if config.drop_rate and self._rng.random() < config.drop_rate:
            return _Answer(None, note="random")
        if config.error_rate and self._rng.random() < config.error_rate:
            status = self._rng.choice(config.error_statuses)
            answer = _error(arrival, status, "Injected by the devstack Graph simulator.")
            if status in (429, 503) and config.error_retry_after_s is not None:
                value = _format_retry_after(config.error_retry_after_s, config.retry_after_form, arrival.arrived_wall)
                if value is not None:
                    answer.headers["Retry-After"] = value
            answer.note = "random"
            return answer
        return None

    def _within_limit(self, app: Lane, arrival: _Arrival, is_write: bool) -> _Answer | None:
        """A 429 if this write would exceed the app's sliding-window limit in its tenant, else None."""
        if not is_write:
            return None
        config = self._config
        window = self._window(app, arrival.arrived_mono)
        if len(window) < self._tenant_write_limits.get(app[0], config.write_limit):
            return None
        frees_at = window[0] + config.write_window_s
        answer = self._throttled(arrival, frees_at - arrival.arrived_mono, config.retry_after_form)
        answer.note = "throttled"
        if config.retry_after_form != "none":
            self._retry_deadlines[app] = _RetryDeadline(frees_at, config.retry_after_form, arrival.arrived_mono)
        return answer

    def _serve(self, request: web.Request, arrival: _Arrival, raw_body: bytes, tenant_id: str) -> _Answer:
        """Answer from the token's tenant's store: resolve the route, then GET or validate and merge a PATCH."""
        try:
            route = _parse_route(request.rel_url.raw_path, request.method)
        except _RouteError as exc:
            return _error(arrival, 400, str(exc), code=exc.code)
        if request.method not in ("GET", "PATCH"):
            return _error(arrival, 405, f"The HTTP method '{request.method}' is not supported on this resource.")
        store = self._tenant_stores.get(tenant_id, self._store)
        try:
            state = self._resolve(store, route)
        except _NotFoundError as exc:
            return self._not_found(arrival, tenant_id, route.config_id, str(exc))
        if request.method == "PATCH":
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return _error(
                    arrival,
                    400,
                    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is "
                    "of valid JSON format (a JSON object).",
                )
            include_unknown = _INCLUDE_UNKNOWN in request.headers.get("Prefer", "").lower()
            problem = _invalid_update(body, route.state_id, include_unknown)
            if problem:
                return _error(arrival, 400, problem)
            state.update((k, v) for k, v in body.items() if k != "@odata.type")
        entity_set = f"deviceManagement/deviceConfigurations('{route.config_id}')/{route.casts}"
        context = f"{self.base_url}/$metadata#{entity_set}/$entity"
        return _Answer(200, {"@odata.context": context, "@odata.type": ENTITY_ODATA_TYPE, **copy.deepcopy(state)})

    def _list_configurations(self, request: web.Request, arrival: _Arrival, tenant_id: str) -> _Answer | None:
        """`GET deviceConfigurations` ($top; ids only), what a consent check reads; 403 without the role; else None."""
        if request.method != "GET" or request.rel_url.path != _CONFIGURATIONS:
            return None
        if tenant_id in self._roles_missing:
            return _error(arrival, 403, _ROLE_MISSING, code="Forbidden")
        store = self._tenant_stores.get(tenant_id, self._store)
        top = request.query.get("$top", "")
        ids = sorted(store)[: int(top)] if top.isdigit() else sorted(store)
        context = f"{self.base_url}/$metadata#deviceManagement/deviceConfigurations(id)"
        return _Answer(200, {"@odata.context": context, "value": [{"id": config_id} for config_id in ids]})

    def _not_found(self, arrival: _Arrival, tenant_id: str, config_id: str, message: str) -> _Answer:
        """404, or 403 `crossTenant` when another added tenant holds the configuration (lock held)."""
        owner = next((t for t, store in self._tenant_stores.items() if t != tenant_id and config_id in store), None)
        if owner is None:
            return _error(arrival, 404, message)
        answer = _error(arrival, 403, f"The token's tenant {tenant_id} does not own this object ({owner} does).")
        answer.note = "crossTenant"
        return answer

    def _resolve(self, store: dict[str, _Config], route: _Route) -> JsonObject:
        """The stored state the route names; raises _NotFoundError for an unknown id or a mismatched cast."""
        config = store.get(route.config_id)
        if config is None:
            raise _NotFoundError(f"Resource 'deviceConfiguration' with id '{route.config_id}' was not found.")
        if route.owner_type is not None and config.type not in OWNER_INSTANCE_TYPES[route.owner_type]:
            raise _NotFoundError(
                f"deviceConfiguration '{route.config_id}' is a '{config.type}', not a '{route.owner_type}'."
            )
        if route.navigation is not None:
            certificate_id = config.fields.get(_reference(route.navigation))
            profile = store.get(str(certificate_id)) if certificate_id else None
            if profile is None:
                raise _NotFoundError(f"deviceConfiguration '{route.config_id}' has no {route.navigation}.")
            config = profile
        if config.type != route.profile_type:
            raise _NotFoundError(
                f"deviceConfiguration '{config.fields['id']}' is a '{config.type}', not a '{route.profile_type}'."
            )
        state = config.states.get(route.state_id)
        if state is None:
            raise _NotFoundError(f"Resource 'managedDeviceCertificateState' with id '{route.state_id}' was not found.")
        return state

    def _record(
        self,
        request: web.Request,
        arrival: _Arrival,
        raw_body: bytes,
        claims: TokenClaims | None,
        answer: _Answer,
    ) -> None:
        """Count and log one request (lock held); never the token itself."""
        counters = self._counters
        counters["requests"] += 1
        if answer.status is None:
            counters["dropped"] += 1
        else:
            self._statuses[answer.status] += 1
        counters["unauthorized"] += answer.status == 401
        counters["faultsInjected"] += answer.note in ("script", "random")
        _count_answer(counters, answer)
        if claims is not None:
            self._tokens_seen.add(claims.jti)
            self._apps_seen.add(claims.appid)
            tenant = self._tenant_counters.setdefault(claims.tid, Counter())
            tenant["requests"] += 1
            _count_answer(tenant, answer)
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode("utf-8", "replace")
        self._log.append(
            {
                "monotonic": arrival.arrived_mono,
                "wallTime": arrival.arrived_wall,
                "method": request.method,
                "path": request.rel_url.raw_path,
                "query": request.rel_url.raw_query_string,
                "headers": {k: v for k, v in request.headers.items() if k.lower() not in _SECRET_HEADERS},
                "clientRequestId": arrival.client_request_id,
                "requestId": arrival.request_id,
                "appId": claims.appid if claims else None,
                "tenantId": claims.tid if claims else None,
                "body": body,
                "status": answer.status,
                "retryAfter": answer.headers.get("Retry-After"),
                "outcome": answer.note,
                "counted": answer.counted,
                "earlyBySeconds": answer.early_by_s,
            }
        )

    # ---- admin endpoints -------------------------------------------------------------------------

    async def _admin_stats(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _admin_requests(self, _: web.Request) -> web.Response:
        return web.json_response(self.requests())

    async def _admin_store(self, _: web.Request) -> web.Response:
        return web.json_response(self.store())

    async def _admin_reset(self, _: web.Request) -> web.Response:
        self.reset_stats()
        self.reset_throttling()
        return web.json_response(self.stats())

    async def _admin_faults(self, request: web.Request) -> web.Response:
        def apply(raw: JsonObject) -> None:
            unknown = set(raw) - {*_ADMIN_KEYS, "rngSeed"}
            if unknown:
                msg = f"unknown keys {sorted(unknown)}; known: {sorted({*_ADMIN_KEYS, 'rngSeed'})}"
                raise ValueError(msg)
            changes = {_ADMIN_KEYS.get(k, "rng_seed"): v for k, v in raw.items()}
            self.configure(**changes)

        return await _admin_call(request, apply, required=True)

    async def _admin_seed(self, request: web.Request) -> web.Response:
        return await _admin_call(request, self.reseed)

    async def _admin_revoke(self, request: web.Request) -> web.Response:
        def revoke(raw: JsonObject | None) -> None:
            self.expire_tokens_issued_before(float((raw or {}).get("issuedBefore", time.time())))

        return await _admin_call(request, revoke)


def _scripted(arrival: _Arrival, step: ScriptStep, path: str) -> _Answer | None:
    if step.drop:
        return _Answer(None, note="script")
    if step.status == 200:
        return None
    if step.status < 300:
        return _Answer(step.status, note="script")
    if step.status < 400:
        return _Answer(step.status, headers={"Location": step.location or REDIRECT_PREFIX + path}, note="script")
    answer = _error(arrival, step.status, "Injected by the devstack Graph simulator's script.")
    if step.retry_after is not None:
        answer.headers["Retry-After"] = step.retry_after
    answer.note = "script"
    return answer


async def _shaped(request: web.Request, answer: _Answer, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
    """Send a script step's answer padded to `body_bytes` and/or one byte per `trickle_s` seconds."""
    padded = body + b" " * max(0, (answer.body_bytes or 0) - len(body))
    response = web.StreamResponse(status=answer.status or 200, headers={**headers, "Content-Length": str(len(padded))})
    await response.prepare(request)
    chunk = 1 if answer.trickle_s is not None else 64 * 1024
    try:
        for start in range(0, len(padded), chunk):
            await response.write(padded[start : start + chunk])
            if answer.trickle_s is not None:
                await asyncio.sleep(answer.trickle_s)
        await response.write_eof()
    except (ConnectionError, RuntimeError):  # the client stopped reading and closed the connection
        pass
    return response


async def _admin_call(request: web.Request, action: Callable[[Any], None], required: bool = False) -> web.Response:
    """Run an admin action on the JSON body (None when empty); a bad body or value is a 400 naming why."""
    try:
        raw = await request.json() if request.can_read_body or required else None
        if raw is not None and not isinstance(raw, dict):
            msg = "the body must be a JSON object"
            raise TypeError(msg)
        action(raw)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return web.json_response({"ok": True})


def main(argv: list[str] | None = None) -> None:
    """Serve the Graph simulator; prints a GRAPH_BASE_URL=... line, then serves until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m devstack.graph_simulator", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--signing-key-hex", required=True, help="the identity emulator's token signing key")
    parser.add_argument("--write-limit", type=int, default=100, help="writes per app per window (default 100)")
    parser.add_argument("--write-window", type=float, default=20.0, help="window in seconds (default 20)")
    parser.add_argument("--retry-after-form", choices=RETRY_AFTER_FORMS, default="seconds")
    parser.add_argument("--in-flight-grace", type=float, default=0.0, help="see in_flight_grace_s (default 0)")
    parser.add_argument("--seed-file", type=Path, help="store seed JSON (default: devstack/graph_seed.json)")
    args = parser.parse_args(argv)
    simulator = GraphSimulator(
        bytes.fromhex(args.signing_key_hex),
        seed=json.loads(args.seed_file.read_text(encoding="utf-8")) if args.seed_file else None,
        write_limit=args.write_limit,
        write_window_s=args.write_window,
        retry_after_form=args.retry_after_form,
        in_flight_grace_s=args.in_flight_grace,
        port=args.port,
    )
    serve_until_signalled(simulator.start, simulator.stop, lambda: [f"GRAPH_BASE_URL={simulator.base_url}"])


if __name__ == "__main__":
    main()
