"""Rows of one Azure table on sockets of their own: the audit write, the deferral records, the pacing table.

azure-data-tables spends 6-16 ms of CPU on one four-row transaction (its pipeline of policies, and
the `email` package parsing the multipart answer; docs/benchmarks.md, section 6), more than the
whole rest of a message. The same request built here is a few string joins and one HMAC or one
cached token, written whole on a kept-alive HTTP/1.1 connection; the answer is read by its length and
for its status lines only. urllib3 and `http.client` would cost three times as much per exchange
(`http.client` parses every answer's headers with the `email` package). The SDK stays for the rare,
read-heavy work (the daily purge, the CLI's history); the deferral records and the pacing table use
the point reads, queries and conditional writes here.

Authentication is either form `AzureWebJobsStorage` takes: a connection string's account key
(Shared Key, as the SDK signs it; Azurite), or a bearer token of the function's identity for
`https://storage.azure.com/.default`, kept until five minutes before it expires. Every request is
bounded like the SDK clients (shared/storage.py): 2 s to connect, 5 s per read (`read_seconds`), and,
unless `retry` is off, one retry after a refused or dropped connection or a 5xx (upserts replace, so a
retry can never duplicate a row). The pacing table turns retries off: a conditional write retried after
a timeout whose first attempt took effect would meet its own ETag.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import select
import socket
import ssl
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

API_VERSION: Final = "2019-02-02"
STORAGE_SCOPE: Final = "https://storage.azure.com/.default"
CONNECT_SECONDS: Final = 2.0
READ_SECONDS: Final = 5.0
"""Per try, as `shared.storage.STORAGE_TIMEOUTS`: to connect, and for each read of the answer."""
MAX_OPERATIONS: Final = 100
"""Operations in one entity-group transaction."""
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
"""Payload of one entity-group transaction."""
_TOKEN_MARGIN_SECONDS: Final = 300
_DEV_ACCOUNT: Final = "devstoreaccount1"
# Azurite's published development key (UseDevelopmentStorage=true), accepted by Azurite only.
_DEV_KEY: Final = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_INT32: Final = 2**31
_BOUNDARY_STEM: Final = "certstate_5f0c"
_BATCH_BOUNDARY: Final = f"batch_{_BOUNDARY_STEM}"
_CHANGESET_BOUNDARY: Final = f"changeset_{_BOUNDARY_STEM}"


class TableError(RuntimeError):
    """The table service refused a request (`code` is its error code, e.g. `TableNotFound`)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


class RowChanged(Exception):
    """A conditional write lost to another writer (`TableRows.write`); `code` is the service's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class SharedKey:
    """An account name and key: requests signed as the SDK signs them (Shared Key, table service)."""

    account: str
    key: bytes

    def headers(self, method: str, url: str, content_type: str) -> dict[str, str]:
        """`x-ms-date` and `Authorization` for one request."""
        date = formatdate(usegmt=True)
        resource = f"/{self.account}{urlsplit(url).path}"
        signed = f"{method}\n\n{content_type}\n{date}\n{resource}".encode()
        signature = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest()).decode()
        return {"x-ms-date": date, "Authorization": f"SharedKey {self.account}:{signature}"}


class BearerToken:
    """The identity's storage token, asked for again only when it is about to expire."""

    def __init__(self, credential: TokenCredential) -> None:
        self._credential = credential
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0

    def headers(self, method: str, url: str, content_type: str) -> dict[str, str]:
        """`x-ms-date` and `Authorization` for one request."""
        with self._lock:
            if time.time() >= self._renew_at:
                token = self._credential.get_token(STORAGE_SCOPE)
                self._token, self._renew_at = token.token, token.expires_on - _TOKEN_MARGIN_SECONDS
            token_text = self._token
        return {"x-ms-date": formatdate(usegmt=True), "Authorization": f"Bearer {token_text}"}


Signer = SharedKey | BearerToken


def parse_connection_string(connection_string: str) -> tuple[str, SharedKey]:
    """The table endpoint and the account key of a connection string (development storage included)."""
    parts = {
        name.strip().lower(): value.strip()
        for name, _, value in (part.partition("=") for part in connection_string.split(";"))
        if name.strip()
    }
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return f"http://127.0.0.1:10002/{_DEV_ACCOUNT}", SharedKey(_DEV_ACCOUNT, base64.b64decode(_DEV_KEY))
    account, key = parts.get("accountname"), parts.get("accountkey")
    if not (account and key):
        msg = "the storage connection string names no account key (a SAS is not supported for the audit table)"
        raise ValueError(msg)
    scheme, suffix = parts.get("defaultendpointsprotocol", "https"), parts.get("endpointsuffix", "core.windows.net")
    endpoint = parts.get("tableendpoint") or f"{scheme}://{account}.table.{suffix}"
    return endpoint.rstrip("/"), SharedKey(account, base64.b64decode(key))


@dataclass(frozen=True, slots=True)
class Entity:
    """One row, serialised: its keys, and its properties as the table service's JSON object."""

    partition_key: str
    row_key: str
    properties: str
    """A JSON object; `properties_json` makes one, and rows sharing properties can share their text."""


def properties_json(properties: Mapping[str, Any]) -> str:
    """Properties as the JSON object the table service reads (see `edm`)."""
    return json.dumps(edm(properties), separators=(",", ":"))  # ASCII: a lone surrogate stays an escape


def entity(row: Mapping[str, Any]) -> Entity:
    """A row given as a mapping with its `PartitionKey` and `RowKey`."""
    properties = {name: value for name, value in row.items() if name not in ("PartitionKey", "RowKey")}
    return Entity(str(row["PartitionKey"]), str(row["RowKey"]), properties_json(properties))


class Row(NamedTuple):
    """A row as read: its properties (keys included, as the service returns them) and its ETag."""

    properties: dict[str, Any]
    etag: str


class TableRows:
    """One table's rows: upserts in entity-group transactions, point reads, queries, conditional writes."""

    def __init__(
        self,
        endpoint: str,
        table: str,
        signer: Signer,
        *,
        pool_size: int = 4,
        read_seconds: float = READ_SECONDS,
        retry: bool = True,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        """`read_seconds` bounds each read of an answer; `retry`: send once more after a dropped connection or a 5xx.

        `on_failure` is told of each request that failed (refused, dropped, timed out, a 5xx), and why: the
        table service may be out for the process's other clients of it too (the pacers, docs/design.md
        "Pacing across instances"), which may have sent nothing meanwhile.
        """
        self._endpoint = endpoint.rstrip("/")
        self._on_failure = on_failure
        self._table = table
        self._signer = signer
        self._pool = _Pool(self._endpoint, pool_size, read_seconds)
        self._retry = retry

    @classmethod
    def from_connection_string(cls, connection_string: str, table: str, **options: Any) -> TableRows:  # noqa: ANN401
        """Rows of `table` in the account of a connection string (`options` as the constructor's)."""
        endpoint, key = parse_connection_string(connection_string)
        return cls(endpoint, table, key, **options)

    @property
    def table(self) -> str:
        """The table's name."""
        return self._table

    def upsert(self, entities: Sequence[Entity], deadline: float | None = None) -> None:
        """Insert or replace every entity, all or nothing (one partition, at most `MAX_OPERATIONS`).

        `deadline` (monotonic): no wait on the service past it (`TimeoutError`), whatever the bounds per read.
        """
        # Fixed boundaries (nothing to draw per request), unless a row holds one.
        fixed = not any(_BOUNDARY_STEM in e.properties or _BOUNDARY_STEM in e.row_key for e in entities)
        batch = _BATCH_BOUNDARY if fixed else f"batch_{uuid.uuid4()}"
        changeset = _CHANGESET_BOUNDARY if fixed else f"changeset_{uuid.uuid4()}"
        head = f"--{changeset}\r\n{_OPERATION_HEAD}PUT {self._endpoint}/{self._table}(PartitionKey='"
        parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"]
        for e in entities:
            parts += (head, _key(e.partition_key), "',RowKey='", _key(e.row_key), _OPERATION_TAIL, e.properties, "\r\n")
        parts.append(f"--{changeset}--\r\n--{batch}--\r\n")
        body = "".join(parts).encode()
        answer = self._send("POST", "/$batch", body, f"multipart/mixed; boundary={batch}", deadline=deadline)
        statuses = _status_lines(answer.body)
        if answer.status != 202 or not statuses or any(not 200 <= s < 300 for s in statuses):
            raise TableError(max(statuses, default=answer.status), _error_code(answer.body))

    def get(self, partition_key: str, row_key: str) -> Row | None:
        """One row; None when there is no such row, or no table yet."""
        answer = self._send("GET", self._entity_path(partition_key, row_key), b"", "")
        if answer.status == 404:
            return None
        _expect(answer, 200)
        return Row(json.loads(answer.body), answer.headers.get("etag", ""))

    def query(self, odata_filter: str) -> list[Row]:
        """Every row the filter selects, every page (a page holds up to 1,000 rows); no table yet: none."""
        below = f"/{self._table}()?$filter={quote(odata_filter, safe='')}"
        rows: list[Row] = []
        more = ""
        while True:
            answer = self._send("GET", below + more, b"", "", _MINIMAL_METADATA)
            if answer.status == 404:
                return []
            _expect(answer, 200)
            for item in json.loads(answer.body)["value"]:
                etag = item.pop("odata.etag", "")
                rows.append(Row({k: v for k, v in item.items() if not k.endswith("@odata.type")}, etag))
            partition = answer.headers.get("x-ms-continuation-nextpartitionkey")
            if not partition:
                return rows
            row = answer.headers.get("x-ms-continuation-nextrowkey")
            more = f"&NextPartitionKey={quote(partition)}" + (f"&NextRowKey={quote(row)}" if row else "")

    def write(self, row: Entity, etag: str | None, *, create_missing: bool = False) -> str:
        """Insert `row` (`etag` None: it must not exist yet) or replace it if it still has `etag`; its new ETag.

        Raises `RowChanged` when another writer came first: inserted it first (409), changed it since
        `etag` (412), or deleted it (404 when replacing). `create_missing` (Azurite; deployed, infra creates
        the tables): a missing table is created and the insert sent again.
        """
        try:
            return self._insert(row) if etag is None else self._replace(row, etag)
        except TableError as err:
            if err.status in (409, 412) or (err.status == 404 and etag is not None):
                raise RowChanged(err.code) from None
            if not (err.status == 404 and create_missing):
                raise
        self.create()  # another writer may have created it meanwhile: that is fine
        try:
            return self._insert(row)
        except TableError as err:
            if err.status == 409:
                raise RowChanged(err.code) from None
            raise

    def _insert(self, row: Entity) -> str:
        answer = self._send("POST", f"/{self._table}", _with_keys(row), "application/json", _NO_CONTENT)
        _expect(answer, 201, 204)
        return answer.headers.get("etag", "")

    def _replace(self, row: Entity, etag: str) -> str:
        below = self._entity_path(row.partition_key, row.row_key)
        answer = self._send("PUT", below, _with_keys(row), "application/json", {"If-Match": etag})
        _expect(answer, 204)
        return answer.headers.get("etag", "")

    def create(self, deadline: float | None = None) -> None:
        """Create the table; one that exists already is fine."""
        body = json.dumps({"TableName": self._table}).encode()
        answer = self._send("POST", "/Tables", body, "application/json", deadline=deadline)
        if answer.status not in (201, 204, 409):
            raise TableError(answer.status, _error_code(answer.body))

    def close(self) -> None:
        """Close the connections."""
        self._pool.close()

    def _entity_path(self, partition_key: str, row_key: str) -> str:
        return f"/{self._table}(PartitionKey='{_key(partition_key)}',RowKey='{_key(row_key)}')"

    def _send(
        self,
        method: str,
        below: str,
        body: bytes,
        content_type: str,
        extra: Mapping[str, str] | None = None,
        *,
        deadline: float | None = None,
    ) -> _Answer:
        """One request, with `extra` headers (a condition, a preference), tried again once if `retry` allows.

        With a `deadline` (monotonic) no connect, read or second try waits past it (`TimeoutError`).
        """
        try:
            answer = self._request(method, below, body, content_type, extra, deadline=deadline)
        except OSError as err:  # refused, dropped, timed out
            self._failed(type(err).__name__)
            raise
        if answer.status >= 500:
            self._failed(f"status {answer.status}")
        return answer

    def _failed(self, reason: str) -> None:
        if self._on_failure is not None:
            self._on_failure(reason)

    def _request(
        self,
        method: str,
        below: str,
        body: bytes,
        content_type: str,
        extra: Mapping[str, str] | None,
        *,
        deadline: float | None,
    ) -> _Answer:
        """`_send`'s request and its one try again."""
        retry = self._retry
        url = self._endpoint + below
        target = self._pool.path + below
        for attempt in (1, 2):
            headers = {
                "Host": self._pool.host_header,
                "Content-Length": str(len(body)),
                "Accept": "application/json;odata=nometadata",
                "DataServiceVersion": "3.0",
                "MaxDataServiceVersion": "3.0;NetFx",
                "x-ms-version": API_VERSION,
                **({"Content-Type": content_type} if content_type else {}),
                **(extra or {}),
                **self._signer.headers(method, url, content_type),
            }
            head = "".join([f"{method} {target} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"])
            try:
                answer = self._pool.exchange(head.encode() + body, deadline)
            except ConnectionError:
                if attempt == 2 or not retry:  # refused or dropped; a read timeout (TimeoutError) is never retried
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("the deadline passed before a second try") from None
                continue
            if answer.status < 500 or attempt == 2 or not retry:
                return answer
        raise AssertionError("unreachable")  # pragma: no cover


class _Answer(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]
    """Lower-cased names."""


class _Pool:
    """Kept-alive connections to one origin, at most `size` of them idle; a busy pool opens another."""

    def __init__(self, endpoint: str, size: int, read_seconds: float = READ_SECONDS) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"not an http(s) endpoint: {endpoint}"
            raise ValueError(msg)
        self.path = parts.path.rstrip("/")
        self.host_header = parts.netloc.rpartition("@")[2]
        self._address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._size = size
        self._read_seconds = read_seconds
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def exchange(self, request: bytes, deadline: float | None = None) -> _Answer:
        """Send one request and read its answer; a connection that served it is kept, one the service dropped is not.

        `deadline` (monotonic) bounds the connect and every read besides their own bounds.
        """
        connection = None
        with self._lock:
            while self._idle and connection is None:
                connection = self._idle.pop()
                if connection.dropped():
                    connection.close()
                    connection = None
        if connection is None:
            connection = _Connection(self._address, self._tls, self._read_seconds, _left(deadline, CONNECT_SECONDS))
        try:
            answer, keep = connection.exchange(request, deadline)
        except BaseException:
            connection.close()
            raise
        with self._lock:
            if keep and len(self._idle) < self._size:
                self._idle.append(connection)
                return answer
        connection.close()
        return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class _Closed(ConnectionError):
    """The service closed the connection before the answer was whole (an idle connection it dropped)."""


class _Connection:
    """One HTTP/1.1 connection: a request written whole, its answer read by Content-Length or chunks."""

    def __init__(
        self, address: tuple[str, int], tls: ssl.SSLContext | None, read_seconds: float, connect_seconds: float
    ) -> None:
        sock = socket.create_connection(address, timeout=connect_seconds)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=address[0])
            sock.settimeout(read_seconds)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._read_seconds = read_seconds
        self._deadline: float | None = None
        self._buffer = b""
        weakref.finalize(self, sock.close)  # a client dropped without `close` leaves no socket open

    def dropped(self) -> bool:
        """Whether the idle connection has something to read: the service closed it (or sent what nobody asked)."""
        if hasattr(select, "poll"):  # no descriptor limit, unlike select()
            readable = select.poll()
            readable.register(self._sock, select.POLLIN)
            return bool(readable.poll(0))
        return bool(select.select([self._sock], [], [], 0)[0])

    def exchange(self, request: bytes, deadline: float | None = None) -> tuple[_Answer, bool]:
        """The answer, and whether the connection may serve another request; no read waits past `deadline`."""
        self._buffer = b""
        if deadline is not None or self._deadline is not None:  # bounded now, or the last exchange was
            self._sock.settimeout(_left(deadline, self._read_seconds))
        self._deadline = deadline
        self._sock.sendall(request)
        end = self._fill_until(b"\r\n\r\n")
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4 :]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise _Closed(f"not an HTTP answer: {status_line[:40]!r}")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        status = int(rest[:3])
        if status in (204, 304) or status < 200:  # never a body
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunks()
        elif "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        else:
            body, keep = self._until_closed(), False
        return _Answer(status, body, headers), keep

    def _fill_until(self, marker: bytes) -> int:
        while (found := self._buffer.find(marker)) < 0:
            self._read()
        return found

    def _recv(self) -> bytes:
        if self._deadline is not None:
            self._sock.settimeout(_left(self._deadline, self._read_seconds))
        return self._sock.recv(65536)

    def _read(self) -> None:
        data = self._recv()
        if not data:
            msg = "the connection was closed before the answer was whole"
            raise _Closed(msg)
        self._buffer += data

    def _exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._read()
        body, self._buffer = self._buffer[:count], self._buffer[count:]
        return body

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            end = self._fill_until(b"\r\n")
            size = int(self._buffer[:end].split(b";")[0], 16)
            self._buffer = self._buffer[end + 2 :]
            if size == 0:
                self._fill_until(b"\r\n")  # no trailers are sent; the empty line ends the answer
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._exactly(2)

    def _until_closed(self) -> bytes:
        while data := self._recv():
            self._buffer += data
        return self._buffer

    def close(self) -> None:
        self._sock.close()


_OPERATION_HEAD: Final = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
_OPERATION_TAIL: Final = (
    "') HTTP/1.1\r\nContent-Type: application/json\r\nAccept: application/json;odata=nometadata\r\n"
    "DataServiceVersion: 3.0\r\n\r\n"
)
_ENCODED_KEY: Final = re.compile(r"[A-Za-z0-9._~%|-]*")
"""What keys made of `shared.contract.audit.key_part`s and `|` hold: two characters to encode, by hand."""


def _key(value: str) -> str:
    """A key inside the entity's URL: quotes doubled (OData), then percent-encoded."""
    if _ENCODED_KEY.fullmatch(value):
        return value.replace("%", "%25").replace("|", "%7C")
    return quote(value.replace("'", "''"), safe="")


def edm(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the table service's JSON: the types JSON cannot say are annotated (`@odata.type`)."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        kind = type(value)
        if kind is str or kind is bool or value is None or (kind is int and -_INT32 <= value < _INT32):
            out[name] = value
        elif isinstance(value, datetime):
            out[name] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out[f"{name}@odata.type"] = "Edm.DateTime"
        elif isinstance(value, bytes | bytearray):
            out[name] = base64.b64encode(value).decode()
            out[f"{name}@odata.type"] = "Edm.Binary"
        elif isinstance(value, int):
            out[name] = str(value)
            out[f"{name}@odata.type"] = "Edm.Int64"
        elif isinstance(value, float):
            out[name] = value
            out[f"{name}@odata.type"] = "Edm.Double"
        else:
            out[name] = value
    return out


_MINIMAL_METADATA: Final = {"Accept": "application/json;odata=minimalmetadata"}
"""A query's rows with their ETags (`odata.etag`); nometadata leaves them out."""
_NO_CONTENT: Final = {"Prefer": "return-no-content"}


def _left(deadline: float | None, bound: float) -> float:
    """Seconds a wait may take: its own `bound`, or less to meet `deadline` (monotonic; none left: `TimeoutError`)."""
    if deadline is None:
        return bound
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    return min(bound, left)


def _with_keys(row: Entity) -> bytes:
    """The row's JSON body with its keys (the properties' text is spliced, not parsed again)."""
    keys = f'{{"PartitionKey":{json.dumps(row.partition_key)},"RowKey":{json.dumps(row.row_key)}'
    rest = row.properties.strip()[1:]
    return (keys + ("," if rest.strip() != "}" else "") + rest).encode()


def _expect(answer: _Answer, *statuses: int) -> None:
    if answer.status not in statuses:
        raise TableError(answer.status, _error_code(answer.body))


def _status_lines(body: bytes) -> list[int]:
    """The status of every operation in a batch answer (`HTTP/1.1 204 No Content` lines)."""
    return [int(status) for status in _STATUS_LINE.findall(body)]


_STATUS_LINE: Final = re.compile(rb"^HTTP/1\.1 (\d{3})", re.MULTILINE)


def _error_code(body: bytes) -> str:
    """The service's error code in an answer (JSON `odata.error.code`), or `unknown`."""
    marker = b'"code":"'
    start = body.find(marker)
    if start < 0:
        return "unknown"
    start += len(marker)
    return body[start : body.find(b'"', start)].decode("utf-8", "replace") or "unknown"
