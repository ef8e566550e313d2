"""Put certificate-state updates on the input queue: build, validate, serialize, send.

For Python services and the `certstate` CLI. A message is validated with the same models and
parser the function uses before it leaves, so a producer learns about a mistake at once and by
field, not minutes later from a `rejected` outcome. What goes on the queue is exactly the fields
given (nothing defaulted), encoded the way host.json's `messageEncoding` says.

azure-storage-queue and azure-identity are imported inside the functions that need them: the
function app imports `shared` at cold start and must not pay for a client it never uses here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self
from urllib.parse import urlsplit

from shared.contract.errors import ErrorCode, FieldError, MessageRejected
from shared.contract.limits import DEFAULT_INPUT_QUEUE, DEFAULT_RESULT_QUEUE, queue_name_problem
from shared.contract.messages import CertificateStateUpdate, UpdateMessage
from shared.contract.parsing import decode_body, parse_message, require_size

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient

__all__ = [
    "DEVELOPMENT_STORAGE",
    "BatchRejected",
    "CertStateProducer",
    "Encoding",
    "QueueNotFound",
    "SendSummary",
    "StorageAccount",
    "StorageError",
    "TargetError",
    "build_message",
    "default_encoding",
    "default_input_queue",
    "default_result_queue",
    "encode",
    "serialize",
    "to_wire",
]

Encoding = Literal["none", "base64"]
DEVELOPMENT_STORAGE: Final = "UseDevelopmentStorage=true"
"""Azurite's well-known account on 127.0.0.1:10001 (the SDK expands it)."""
ProgressCallback = Callable[[int, int], None]


# ---- building and serializing -------------------------------------------------------------------


def build_message(
    *,
    profile_type: str,
    device_configuration_id: str,
    managed_device_certificate_state_id: str,
    update: Mapping[str, Any] | CertificateStateUpdate,
    via: str | None = None,
    correlation_id: str | None = None,
    expires_at: str | datetime | None = None,
    dry_run: bool = False,
) -> UpdateMessage:
    """An `UpdateMessage` from typed arguments, validated as the function will validate it.

    `update` maps Graph property names (camelCase, as on the wire) to values, or is a
    `CertificateStateUpdate`. Only what is given ends up in the message: `None` arguments are
    left out, `dry_run` appears only when true. Raises `MessageRejected` with one `FieldError`
    per field at fault (`.details`).
    """
    document: dict[str, Any] = {}
    if correlation_id is not None:
        document["correlationId"] = correlation_id
    document["profileType"] = profile_type
    document["deviceConfigurationId"] = device_configuration_id
    document["managedDeviceCertificateStateId"] = managed_device_certificate_state_id
    document["update"] = update.body() if isinstance(update, CertificateStateUpdate) else dict(update)
    if via is not None:
        document["via"] = via
    if expires_at is not None:
        document["expiresAt"] = _offset_text(expires_at)
    if dry_run:
        document["dryRun"] = True
    return parse_message(document)


def _offset_text(value: str | datetime) -> str:
    """A DateTimeOffset string; a `datetime` must know its offset, or 'expires at' is ambiguous."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        detail = FieldError("expiresAt", "a datetime needs a timezone (e.g. datetime.now(UTC))")
        raise MessageRejected(
            code=ErrorCode.VALIDATION_FAILED, message=f"expiresAt: {detail.message}", details=[detail]
        )
    return value.isoformat()


def to_wire(message: UpdateMessage) -> dict[str, Any]:
    """The message as a JSON object by its wire names: only the fields that were set, `update` in given order."""
    wire = message.model_dump(mode="json", by_alias=True, exclude_unset=True)
    wire["update"] = message.update.body()
    return wire


def serialize(message: UpdateMessage) -> str:
    """Compact JSON text of `to_wire` (DateTimeOffset strings exactly as given)."""
    return _dumps(to_wire(message))


def encode(message: UpdateMessage | Mapping[str, Any], encoding: Encoding = "none") -> str:
    """The queue message text for `message`: raw JSON (`none`) or base64 of its UTF-8 (`base64`).

    A mapping is validated by wire names and sent as written (key order included), which is what
    replaying a `failed` outcome's `request` needs. Whatever the input, the result is checked the
    way the function will read it, so a message that leaves here is one the function accepts.
    """
    text = serialize(message) if isinstance(message, UpdateMessage) else _dumps(message)
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the function's reader says which field holds it
        decode_body(text.encode("utf-8", "backslashreplace"))  # the JSON escape of it, as a producer would send
        raise
    require_size(raw, "message as JSON")
    payload = base64.b64encode(raw).decode("ascii") if encoding == "base64" else text
    stored = payload.encode("utf-8")
    require_size(stored, f"message as {encoding}")
    parse_message(decode_body(stored))  # once, exactly as the function will read it
    return payload


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# ---- configuration defaults -----------------------------------------------------------------------


def default_encoding() -> Encoding:
    """host.json's `messageEncoding`; `none` when host.json is not beside the code (an installed wheel).

    The function accepts both encodings, so the fallback only decides how readable the queue is.
    """
    from shared.host_config import queue_options  # noqa: PLC0415 - host.json is read only when sending

    try:
        return queue_options().message_encoding
    except (OSError, ValueError):
        return "none"


def default_input_queue() -> str:
    """`INPUT_QUEUE_NAME` from the environment, else the app's default."""
    return os.environ.get("INPUT_QUEUE_NAME") or DEFAULT_INPUT_QUEUE


def default_result_queue() -> str:
    """`RESULT_QUEUE_NAME` from the environment, else the app's default."""
    return os.environ.get("RESULT_QUEUE_NAME") or DEFAULT_RESULT_QUEUE


# ---- errors -------------------------------------------------------------------------------------


class TargetError(ValueError):
    """The storage target is misconfigured (malformed connection string, bad URL or queue name)."""


class StorageError(Exception):
    """The queue service could not be used: unreachable, credentials refused, or an error answer.

    `partial` is set by `send_many` when some messages were already sent before the failure.
    """

    def __init__(self, message: str, *, partial: SendSummary | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial


class QueueNotFound(StorageError):
    """The queue does not exist (nothing creates it implicitly)."""


class BatchRejected(ValueError):
    """Some messages of a batch are invalid; nothing was sent. `errors` holds (index, rejection)."""

    def __init__(self, errors: Sequence[tuple[int, MessageRejected]]) -> None:
        self.errors = list(errors)
        index, first = self.errors[0]
        super().__init__(f"{len(self.errors)} invalid message(s), nothing sent; first: #{index}: {first.message}")


@dataclass(frozen=True)
class SendSummary:
    """What `send_many` did: ids in input order (`None` where a message was not sent)."""

    total: int
    message_ids: tuple[str | None, ...]
    elapsed_s: float

    @property
    def sent(self) -> int:
        """How many messages are on the queue."""
        return sum(1 for m in self.message_ids if m is not None)


def _reason(err: BaseException) -> str:
    """One short line out of an SDK exception (urllib3's are long and carry object reprs)."""
    text = str(getattr(err, "message", None) or err)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno[1].strip()
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first if len(first) <= 200 else first[:199] + "…"


def service_code(err: BaseException) -> str:
    """The service's error code (`InternalError`), not the SDK enum's name (`StorageErrorCode.INTERNAL_ERROR`)."""
    code = getattr(err, "error_code", None) or ""
    return str(getattr(code, "value", code))


@contextmanager
def storage_errors(endpoint: str, queue_name: str | None = None, *, table: str | None = None) -> Iterator[None]:
    """Turn azure-core exceptions into `StorageError`/`QueueNotFound` with one clear line (of a queue or table)."""
    from azure.core.exceptions import (  # noqa: PLC0415 - lazy: see the module docstring
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    where = f"queue {queue_name!r} at {endpoint}" if queue_name else endpoint
    if table is not None:
        where = f"audit table {table!r} at {endpoint}"
    try:
        yield
    except ResourceNotFoundError as err:
        if getattr(err, "error_code", None) == "QueueNotFound":
            raise QueueNotFound(f"{where} does not exist") from None
        raise StorageError(f"{where}: not found ({_reason(err)})") from None
    except ClientAuthenticationError as err:
        raise StorageError(f"{where}: could not authenticate: {_reason(err)}") from None
    except (ServiceRequestError, ServiceResponseError) as err:
        service = "table" if table is not None else "queue"
        raise StorageError(f"cannot reach the {service} service at {endpoint}: {_reason(err)}") from None
    except HttpResponseError as err:
        raise StorageError(f"{where}: the service answered {err.status_code} {service_code(err)}".rstrip()) from None
    except AzureError as err:
        raise StorageError(f"{where}: {_reason(err)}") from None


# ---- where the queues are -------------------------------------------------------------------------


class StorageAccount:
    """A storage account's queue service: a connection string, or an account URL with a token credential.

    Retries and timeouts are short by default (3 retries about a second apart, 10 s to connect): a person
    at a terminal wants to hear that the account is unreachable in seconds, not after the SDK's default
    backoff (15 s, growing).
    """

    def __init__(
        self,
        connection_string: str | None = None,
        *,
        account_url: str | None = None,
        credential: TokenCredential | None = None,
        retry_total: int = 3,
        connection_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        """Nothing is contacted until a queue is used; without arguments, local Azurite."""
        if connection_string is not None and account_url is not None:
            msg = "give a connection string or an account URL, not both"
            raise TargetError(msg)
        if account_url is not None:
            parts = urlsplit(account_url)
            if parts.scheme != "https" or not parts.hostname or parts.query or parts.username:
                msg = f"account URL must be https://<account>.queue.core.windows.net, not {account_url!r}"
                raise TargetError(msg)
        self._connection_string = connection_string if account_url is None else None
        if self._connection_string is None and account_url is None:
            self._connection_string = DEVELOPMENT_STORAGE
        self._account_url = account_url
        self._credential = credential
        self._owns_credential = False
        self._options: dict[str, Any] = {
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        self._retry_total = retry_total
        self._endpoint: str | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The queue service URL without any SAS or key, for messages a person reads."""
        if self._endpoint is None:
            if self._account_url is not None:
                endpoint = self._account_url
            else:
                from azure.storage.queue import QueueServiceClient  # noqa: PLC0415 - lazy

                assert self._connection_string is not None
                try:
                    endpoint = QueueServiceClient.from_connection_string(self._connection_string).url
                except ValueError:
                    msg = "the connection string is malformed (expected Key=Value;... as the portal shows it)"
                    raise TargetError(msg) from None
            parts = urlsplit(endpoint)
            self._endpoint = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        return self._endpoint

    def queue(self, name: str) -> QueueClient:
        """A client for one queue (raw text in and out: no SDK-side encoding)."""
        if problem := queue_name_problem(name):
            raise TargetError(problem)
        from azure.storage.queue import LinearRetry, QueueClient  # noqa: PLC0415 - lazy

        endpoint = self.endpoint  # validates a connection string before the SDK echoes it anywhere
        retry = LinearRetry(backoff=1, retry_total=self._retry_total, random_jitter_range=1)
        if self._connection_string is not None:
            return QueueClient.from_connection_string(
                self._connection_string, name, retry_policy=retry, **self._options
            )
        return QueueClient(endpoint, name, credential=self._token_credential(), retry_policy=retry, **self._options)

    def table(self, name: str) -> TableClient:
        """A client for one table of the same account (the audit trail), with the same credentials."""
        from azure.data.tables import TableClient  # noqa: PLC0415 - lazy

        options = {**self._options, "retry_total": self._retry_total}  # as short as the queues' (--retries)
        if self._connection_string is not None:
            _ = self.endpoint  # validates the connection string before the SDK echoes it anywhere
            return TableClient.from_connection_string(self._connection_string, name, **options)
        parts = urlsplit(self.endpoint)
        endpoint = f"{parts.scheme}://{parts.netloc.replace('.queue.', '.table.', 1)}"
        return TableClient(endpoint, name, credential=self._token_credential(), **options)

    def _token_credential(self) -> TokenCredential:
        with self._lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - lazy

                self._credential = DefaultAzureCredential()
                self._owns_credential = True
            return self._credential

    def close(self) -> None:
        """Close the credential this object created (a given one belongs to the caller)."""
        if self._owns_credential and self._credential is not None:
            close = getattr(self._credential, "close", None)
            if callable(close):
                close()
            self._credential = None
            self._owns_credential = False


# ---- sending -------------------------------------------------------------------------------------


class CertStateProducer:
    """Sends validated updates to the input queue.

    >>> with CertStateProducer(connection_string) as producer:  # doctest: +SKIP
    ...     message_id = producer.send(build_message(...))

    Nothing is created implicitly: a missing queue raises `QueueNotFound` unless `create_queue=True`.
    Queue Storage does not keep order and the function handles a batch concurrently, so two updates of
    the same state should not be in flight at once if their order matters; `concurrency` only makes
    large batches faster.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        *,
        account_url: str | None = None,
        credential: TokenCredential | None = None,
        account: StorageAccount | None = None,
        queue_name: str | None = None,
        message_encoding: Encoding | None = None,
        create_queue: bool = False,
        concurrency: int = 8,
        retry_total: int = 3,
        connection_timeout: float = 10.0,
    ) -> None:
        """Target a connection string, an account URL (DefaultAzureCredential unless `credential`), or `account`."""
        if account is not None and (connection_string or account_url or credential):
            msg = "give either `account` or connection details, not both"
            raise TargetError(msg)
        if concurrency < 1:
            msg = "concurrency must be at least 1"
            raise ValueError(msg)
        self._owns_account = account is None
        self.account = account or StorageAccount(
            connection_string,
            account_url=account_url,
            credential=credential,
            retry_total=retry_total,
            connection_timeout=connection_timeout,
        )
        self.queue_name = queue_name or default_input_queue()
        self.message_encoding: Encoding = message_encoding or default_encoding()
        self._create_queue = create_queue
        self._concurrency = concurrency
        self._queue: QueueClient | None = None
        self._queue_ready = not create_queue

    def _client(self) -> QueueClient:
        if self._queue is None:
            self._queue = self.account.queue(self.queue_name)
        if not self._queue_ready:
            self.ensure_queue()
        return self._queue

    def ensure_queue(self) -> bool:
        """Create the queue if it is missing; True if it was created."""
        from azure.core.exceptions import ResourceExistsError  # noqa: PLC0415 - lazy

        if self._queue is None:
            self._queue = self.account.queue(self.queue_name)
        with storage_errors(self.account.endpoint, self.queue_name):
            try:
                self._queue.create_queue()
            except ResourceExistsError:
                created = False
            else:
                created = True
        self._queue_ready = True
        return created

    def send(self, message: UpdateMessage | Mapping[str, Any]) -> str:
        """Validate, encode and enqueue one message; returns the queue's message id."""
        payload = encode(message, self.message_encoding)
        return self._send_payload(payload)

    def _send_payload(self, payload: str) -> str:
        client = self._client()
        with storage_errors(self.account.endpoint, self.queue_name):
            return str(client.send_message(payload).id)

    def send_many(
        self,
        messages: Iterable[UpdateMessage | Mapping[str, Any]],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> SendSummary:
        """Validate every message first (`BatchRejected`, nothing sent, if any is invalid), then enqueue all.

        `on_progress(sent, total)` is called from this thread after each message. On a storage failure
        the `StorageError` carries `partial`, the summary of what was already sent.
        """
        payloads: list[str] = []
        errors: list[tuple[int, MessageRejected]] = []
        for index, message in enumerate(messages):
            try:
                payloads.append(encode(message, self.message_encoding))
            except MessageRejected as err:
                errors.append((index, err))
        if errors:
            raise BatchRejected(errors)
        started = time.monotonic()
        ids: list[str | None] = [None] * len(payloads)
        if payloads:
            self._client()  # fail once, before any thread, when the queue is missing
        try:
            self._send_all(payloads, ids, on_progress)
        except StorageError as err:
            err.partial = SendSummary(len(payloads), tuple(ids), time.monotonic() - started)
            raise
        return SendSummary(len(payloads), tuple(ids), time.monotonic() - started)

    def _send_all(self, payloads: list[str], ids: list[str | None], on_progress: ProgressCallback | None) -> None:
        total, sent = len(payloads), 0
        if self._concurrency == 1 or total <= 1:
            for index, payload in enumerate(payloads):
                ids[index] = self._send_payload(payload)
                sent += 1
                if on_progress:
                    on_progress(sent, total)
            return
        pending: dict[Future[str], int] = {}
        with ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="certstate-send") as pool:
            try:
                for index, payload in enumerate(payloads):
                    pending[pool.submit(self._send_payload, payload)] = index
                    if len(pending) >= self._concurrency * 2:  # bounded: an interrupt leaves little in flight
                        sent += self._collect(pending, ids, total, sent, on_progress)
                while pending:
                    sent += self._collect(pending, ids, total, sent, on_progress)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise

    @staticmethod
    def _collect(
        pending: dict[Future[str], int],
        ids: list[str | None],
        total: int,
        sent: int,
        on_progress: ProgressCallback | None,
    ) -> int:
        """Wait for at least one send; record what finished; re-raise the first failure."""
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        finished = 0
        failure: BaseException | None = None
        for future in done:
            index = pending.pop(future)
            error = future.exception()
            if error is not None:
                failure = failure or error
                continue
            ids[index] = future.result()
            finished += 1
            if on_progress:
                on_progress(sent + finished, total)
        if failure is not None:
            raise failure
        return finished

    def close(self) -> None:
        """Close the queue client (and the credential, if this producer created it)."""
        if self._queue is not None:
            self._queue.close()
            self._queue = None
        if self._owns_account:
            self.account.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
