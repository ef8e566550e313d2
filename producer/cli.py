"""`certstate`: check, send, watch and replay certificate-state updates from a terminal or a script.

Every command that touches a queue goes through `producer.sender`, so the CLI validates exactly as
the function does and sends exactly what a Python producer would. Expected failures (a bad file, an
unreachable account, a missing queue) end in one line on stderr and a documented exit code, never a
traceback: scripts branch on the code, people read the line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from producer.sender import (
    CertStateProducer,
    QueueNotFound,
    StorageAccount,
    StorageError,
    TargetError,
    default_input_queue,
    default_result_queue,
    encode,
    storage_errors,
)
from shared.contract.errors import FieldError, MessageRejected
from shared.contract.limits import queue_name_problem
from shared.contract.outcomes import Status
from shared.contract.parsing import decode_body, parse_message

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

PROG: Final = "certstate"
EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
EXIT_STORAGE: Final = 3
EXIT_INTERRUPTED: Final = 130

PEEK_LIMIT: Final = 32
"""Queue Storage peeks at most 32 messages, always the first ones."""
SCAN_VISIBILITY_S: Final = 60
"""How long messages received while scanning stay hidden if the CLI dies before putting them back."""

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    done (for validate: every message valid)
  {EXIT_INVALID}    invalid input: a message breaks the contract, or FILE is not UTF-8 / JSON;
       send refuses the whole file and sends nothing
  {EXIT_USAGE}    usage error: unknown option, FILE cannot be opened, malformed connection string,
       bad queue name or account URL
  {EXIT_STORAGE}    the queue service is unreachable, refused the credentials, or the queue is missing
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

TARGETS = """\
where the queues are (commands send, results, replay, stats):
  local Azurite on 127.0.0.1:10001 (python -m devstack.azurite) unless one of these is given, first wins:
    --account-url https://<account>.queue.core.windows.net   signs in with DefaultAzureCredential
                                                              (az login, managed identity, AZURE_* variables)
    --connection-string "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=..."
    $CERTSTATE_CONNECTION_STRING, then $AzureWebJobsStorage (a connection string),
    then $AzureWebJobsStorage__queueServiceUri (an account URL, as the deployed app has it)
  queue names: --input-queue / --result-queue, else $INPUT_QUEUE_NAME / $RESULT_QUEUE_NAME,
    else certificate-state-updates / certificate-state-results (the app's defaults)"""

EPILOG = f"""\
examples:
  certstate validate examples/seed-routes/*.json      check messages offline, line and field of each error
  certstate send --create-queue examples/dry-run.json  enqueue to local Azurite, creating the queue
  certstate send updates.jsonl                         one message per line (JSON Lines), all or nothing
  certstate results --follow                           watch outcomes arrive (Ctrl-C stops)
  certstate results --status failed --json             failed outcomes as JSON Lines, for jq
  certstate replay --error-code graphThrottled --remove
  certstate stats                                      queue depths: input, results, poison
  certstate schema message > message.schema.json
  certstate send --account-url https://myaccount.queue.core.windows.net updates.jsonl

A message is one JSON object (schemas/message.schema.json, docs/producers.md):
  {{"profileType": "iosScepCertificateProfile", "deviceConfigurationId": "...",
   "managedDeviceCertificateStateId": "...", "update": {{"certificateKeyUsage": "digitalSignature"}}}}
Each command has its own --help (certstate send --help).

{TARGETS}

{EXIT_CODES}"""


class UsageError(Exception):
    """The command line or a file name is wrong (exit 2)."""


class InputError(Exception):
    """A file's content cannot be read as messages at all (exit 1)."""


# ---- reading message files -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One message of an input file: where it starts, its JSON object, and what is wrong with it."""

    line: int
    document: dict[str, Any] | None
    problems: tuple[FieldError, ...] = ()

    def describe(self) -> Iterator[str]:
        """One line per problem: `line 3: update.certificateKeyLength: ...`."""
        for problem in self.problems:
            where = "" if problem.field == "message" else f"{problem.field}: "
            yield f"line {self.line}: {where}{problem.message}"


def read_source(path: str) -> bytes:
    """The bytes of FILE, or of stdin for `-`."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        msg = f"{path}: no such file"
    except IsADirectoryError:
        msg = f"{path}: is a directory"
    except OSError as err:
        msg = f"{path}: cannot read ({err.strerror or err})"
    raise UsageError(msg)


def parse_entries(data: bytes) -> list[Entry]:
    """One JSON object (pretty-printed or not), or JSON Lines (blank lines ignored), as entries.

    A file is JSON Lines when it does not parse as one object and its first line is a whole
    object on its own line, so a broken pretty-printed object gets one error, not one per line.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        msg = f"not UTF-8 ({err.reason} at byte {err.start})"
        raise InputError(msg) from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        msg = "no messages: the file is empty"
        raise InputError(msg)
    whole = _entry(lines[0][0], text)
    first = lines[0][1].strip()
    one_object_per_line = first.startswith("{") and first.endswith("}")
    if len(lines) == 1 or whole.document is not None or not one_object_per_line:
        return [whole]
    return [_entry(number, line) for number, line in lines]


def _entry(line: int, text: str) -> Entry:
    try:
        document = decode_body(text.encode("utf-8"))
    except MessageRejected as err:
        return Entry(line, None, (FieldError("message", err.message),))
    try:
        parse_message(document)
    except MessageRejected as err:
        return Entry(line, document, tuple(err.details) or (FieldError("message", err.message),))
    return Entry(line, document)


def _load(path: str) -> list[Entry]:
    try:
        return parse_entries(read_source(path))
    except InputError as err:
        raise InputError(f"{_label(path)}: {err}") from None


def _label(path: str) -> str:
    return "stdin" if path == "-" else path


# ---- small output helpers ------------------------------------------------------------------------


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class _Progress:
    """A `sent 120/500` counter redrawn in place on stderr, at most ten times a second, for a person watching."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.sent = 0
        self._shown = False
        self._last = 0.0

    def __call__(self, sent: int, total: int) -> None:
        self.sent = sent
        now = time.monotonic()
        if self.enabled and (sent == total or now - self._last >= 0.1):
            sys.stderr.write(f"\r  sent {sent}/{total}")
            sys.stderr.flush()
            self._shown, self._last = True, now

    def finish(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            self._shown = False


# ---- commands ------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every message of every FILE offline; list each problem by line and field."""
    files: list[str] = args.files
    several = len(files) > 1
    total = invalid = 0
    for path in files:
        prefix = f"{_label(path)}: " if several else ""
        try:
            entries = _load(path)
        except InputError as err:
            _out(str(err))
            invalid += 1
            total += 1
            continue
        for entry in entries:
            for text in entry.describe():
                _out(prefix + text)
        total += len(entries)
        invalid += sum(1 for e in entries if e.problems)
    verdict = "all valid" if not invalid else f"{invalid} invalid"
    _out(f"{_plural(total, 'message')} checked: {verdict}")
    return EXIT_INVALID if invalid else EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    """Validate the whole file, then enqueue every message (or none, if any is invalid)."""
    entries = _load(args.file)
    invalid = [e for e in entries if e.problems]
    if invalid:
        for entry in invalid:
            for text in entry.describe():
                _err(text)
        _err(f"nothing sent: {len(invalid)} of {_plural(len(entries), 'message')} invalid")
        return EXIT_INVALID
    account = _account(args)
    progress = _Progress(enabled=args.progress or sys.stderr.isatty())
    producer = CertStateProducer(
        account=account,
        queue_name=args.input_queue,
        message_encoding=args.encoding,
        create_queue=args.create_queue,
        concurrency=args.concurrency,
    )
    try:
        summary = producer.send_many([e.document or {} for e in entries], on_progress=progress)
    except StorageError as err:
        progress.finish()
        if err.partial is not None and err.partial.sent:
            _err(f"{err.partial.sent} of {len(entries)} sent before the failure")
        raise
    except KeyboardInterrupt:
        progress.finish()
        _err(f"interrupted: at least {progress.sent} of {len(entries)} sent")
        raise
    finally:
        producer.close()
    progress.finish()
    if args.json:
        for entry, message_id in zip(entries, summary.message_ids, strict=True):
            correlation = (entry.document or {}).get("correlationId")
            _out(json.dumps({"line": entry.line, "messageId": message_id, "correlationId": correlation}))
    encoding = "raw JSON" if producer.message_encoding == "none" else "base64"
    report = _err if args.json else _out
    report(
        f"sent {_plural(summary.sent, 'message')} to {producer.queue_name!r} at {account.endpoint} "
        f"({encoding}, {summary.elapsed_s:.1f} s)"
    )
    return EXIT_OK


COLUMNS: Final = (
    ("STATUS", 9),
    ("CORRELATION ID", 28),
    ("MESSAGE ID", 36),
    ("DEQ", 3),
    ("HTTP", 4),
    ("ERROR", 22),
    ("COMPLETED AT", 24),
)


def _cell(value: object, width: int) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(values: Sequence[object]) -> str:
    return "  ".join(_cell(v, w).ljust(w) for v, (_, w) in zip(values, COLUMNS, strict=True)).rstrip()


def _outcome_row(outcome: dict[str, Any]) -> str:
    error = outcome.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return _row(
        [
            outcome.get("status"),
            outcome.get("correlationId"),
            outcome.get("messageId"),
            outcome.get("dequeueCount"),
            outcome.get("httpStatus"),
            code,
            outcome.get("completedAt"),
        ]
    )


def read_outcome(content: object) -> dict[str, Any] | None:
    """An outcome's JSON object from a result-queue message (raw JSON; base64 tolerated), or None."""
    if not isinstance(content, str | bytes):
        return None
    try:
        return decode_body(content.encode("utf-8") if isinstance(content, str) else content)
    except MessageRejected:
        return None


@dataclass(frozen=True)
class _Filter:
    status: str | None = None
    correlation_id: str | None = None
    error_code: str | None = None

    def matches(self, outcome: dict[str, Any]) -> bool:
        error = outcome.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return (
            (self.status is None or outcome.get("status") == self.status)
            and (self.correlation_id is None or outcome.get("correlationId") == self.correlation_id)
            and (self.error_code is None or code == self.error_code)
        )


class _Printer:
    """Rows as a fixed-width table (header once) or JSON Lines."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.printed = 0
        self._headed = as_json

    def header(self) -> None:
        if not self._headed:
            _out(_row([name for name, _ in COLUMNS]))
            self._headed = True

    def __call__(self, outcome: dict[str, Any]) -> None:
        self.header()
        _out(json.dumps(outcome, ensure_ascii=False) if self.as_json else _outcome_row(outcome))
        self.printed += 1


def _skip_unreadable(message: QueueMessage) -> None:
    _err(f"skipped result-queue message {message.id}: not an outcome (not a JSON object)")


def _receive_pages(queue: QueueClient, held: list[QueueMessage]) -> Iterator[list[QueueMessage]]:
    """Pages of received messages, each message once per pass; repeats (visibility ran out) go to `held`."""
    seen: set[str] = set()
    while True:
        page = list(
            queue.receive_messages(
                messages_per_page=PEEK_LIMIT, max_messages=PEEK_LIMIT, visibility_timeout=SCAN_VISIBILITY_S
            )
        )
        fresh = [m for m in page if m.id not in seen]
        held.extend(m for m in page if m.id in seen)
        if not fresh:
            return
        seen.update(m.id for m in fresh)
        yield fresh


def _restore(queue: QueueClient, held: list[QueueMessage]) -> None:
    """Make received-but-kept messages visible again now, not when their visibility timeout ends.

    Updating a message needs more than the Storage Queue Data Message Processor role; without it the
    messages simply reappear after SCAN_VISIBILITY_S, which is said once rather than failing the command.
    """
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: PLC0415 - lazy

    refused: HttpResponseError | None = None
    count = 0
    while held:
        message = held.pop()
        try:
            queue.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
        except ResourceNotFoundError:
            continue  # deleted, or received again by someone else: nothing to put back
        except HttpResponseError as err:
            if getattr(err, "error_code", None) in {"PopReceiptMismatch", "MessageNotFound"}:
                continue
            refused, count = err, count + 1
    if refused is not None:
        _err(
            f"note: could not make {_plural(count, 'message')} visible again at once "
            f"({refused.status_code} {getattr(refused, 'error_code', '') or ''}".rstrip()
            + f"); they reappear within {SCAN_VISIBILITY_S} s"
        )


def _process_page(page: list[QueueMessage], held: list[QueueMessage], handle: Callable[[QueueMessage], bool]) -> None:
    """Run `handle` on each message (True: consumed); the others, and the rest on an error, go to `held`."""
    for position, message in enumerate(page):
        try:
            consumed = handle(message)
        except BaseException:
            held.extend(page[position:])
            raise
        if not consumed:
            held.append(message)


def cmd_results(args: argparse.Namespace) -> int:
    """Show outcomes from the result queue: peeked by default, received and deleted with --remove."""
    account = _account(args)
    queue = account.queue(args.result_queue)
    chosen = _Filter(status=args.status, correlation_id=args.correlation_id)
    printer = _Printer(args.json)
    if not args.remove and args.max > PEEK_LIMIT:
        _err(f"note: without --remove only the first {PEEK_LIMIT} messages of a queue can be seen")
    seen: set[str] = set()
    with storage_errors(account.endpoint, args.result_queue), contextlib.closing(queue):
        if args.follow:
            printer.header()
        while True:
            if args.remove:
                _take_outcomes(queue, chosen, printer, args.max)
            else:
                _peek_outcomes(queue, chosen, printer, args.max, seen)
            if not args.follow:
                break
            time.sleep(args.interval)
    if printer.printed == 0 and not args.follow:
        _err(f"no matching outcomes on {args.result_queue!r}")
    return EXIT_OK


def _peek_outcomes(queue: QueueClient, chosen: _Filter, printer: _Printer, limit: int, seen: set[str]) -> None:
    shown = 0
    for message in queue.peek_messages(max_messages=PEEK_LIMIT):
        if shown >= limit:
            break
        if message.id in seen:
            continue
        seen.add(message.id)
        outcome = read_outcome(message.content)
        if outcome is None:
            _skip_unreadable(message)
        elif chosen.matches(outcome):
            printer(outcome)
            shown += 1


def _take_outcomes(queue: QueueClient, chosen: _Filter, printer: _Printer, limit: int) -> None:
    taken = 0
    held: list[QueueMessage] = []

    def handle(message: QueueMessage) -> bool:
        nonlocal taken
        if taken >= limit:
            return False
        outcome = read_outcome(message.content)
        if outcome is None:
            _skip_unreadable(message)
            return False
        if not chosen.matches(outcome):
            return False
        printer(outcome)
        queue.delete_message(message)
        taken += 1
        return True

    try:
        for page in _receive_pages(queue, held):
            _process_page(page, held, handle)
            if taken >= limit:
                break
    finally:
        _restore(queue, held)


def cmd_replay(args: argparse.Namespace) -> int:
    """Put the original message of each matching `failed` outcome back on the input queue."""
    account = _account(args)
    results = account.queue(args.result_queue)
    chosen = _Filter(status=Status.FAILED.value, correlation_id=args.correlation_id, error_code=args.error_code)
    producer = CertStateProducer(account=account, queue_name=args.input_queue)
    held: list[QueueMessage] = []
    groups: dict[str, list[tuple[QueueMessage, dict[str, Any]]]] = {}
    replayed = skipped = removed = 0

    def collect(message: QueueMessage) -> bool:
        outcome = read_outcome(message.content)
        if outcome is None or not chosen.matches(outcome):
            return False
        # At-least-once delivery may have written the same outcome twice: replay it once.
        groups.setdefault(str(outcome.get("messageId") or message.id), []).append((message, outcome))
        return True

    with storage_errors(account.endpoint, args.result_queue), contextlib.closing(results):
        pending: list[list[tuple[QueueMessage, dict[str, Any]]]] | None = None  # None: still collecting
        try:
            for page in _receive_pages(results, held):
                _process_page(page, held, collect)
            pending = list(groups.values())
            while pending:
                group = pending[0]
                done = _replay_one(group[0][1], producer, dry_run=args.dry_run)
                pending.pop(0)
                if done and args.remove and not args.dry_run:
                    for message, _ in group:
                        results.delete_message(message)
                        removed += 1
                else:
                    held.extend(message for message, _ in group)
                replayed += done
                skipped += not done
        finally:  # whatever was received and is neither deleted nor already held goes back now
            leftovers = groups.values() if pending is None else pending
            held.extend(message for group in leftovers for message, _ in group)
            _restore(results, held)
            producer.close()
    if not groups:
        _out("no failed outcomes match")
        return EXIT_OK
    if args.dry_run:
        _out(f"dry run: {replayed} would be replayed, {skipped} skipped; nothing sent or removed")
    else:
        tail = f"; removed {_plural(removed, 'outcome message')}" if args.remove else ""
        _out(f"replayed {replayed} onto {producer.queue_name!r}, {skipped} skipped{tail}")
    return EXIT_INVALID if skipped else EXIT_OK


def _replay_one(outcome: dict[str, Any], producer: CertStateProducer, *, dry_run: bool) -> bool:
    error = outcome.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    what = f"{outcome.get('correlationId')} (failed {code or '-'}, message {outcome.get('messageId')})"
    request = outcome.get("request")
    if not isinstance(request, dict):
        _out(f"skipped {what}: the outcome carries no request")
        return False
    try:
        encode(request, producer.message_encoding)
    except MessageRejected as err:
        _out(f"skipped {what}: its request is invalid now: {err.message}")
        return False
    if dry_run:
        _out(f"would replay {what}")
        return True
    message_id = producer.send(request)
    _out(f"replayed {what} as message {message_id}")
    return True


def cmd_stats(args: argparse.Namespace) -> int:
    """Approximate depths of the input, result and poison queues."""
    account = _account(args)
    queues = {
        "input": args.input_queue,
        "result": args.result_queue,
        "poison": f"{args.input_queue}-poison",
    }
    depths: dict[str, int | None] = {}
    for role, name in queues.items():
        with contextlib.closing(account.queue(name)) as queue:
            try:
                with storage_errors(account.endpoint, name):
                    depths[role] = int(queue.get_queue_properties().approximate_message_count or 0)
            except QueueNotFound:
                depths[role] = None
    if args.json:
        _out(
            json.dumps(
                {role: {"name": queues[role], "approximateMessageCount": depths[role]} for role in queues},
            )
        )
        return EXIT_OK
    width = max(len(name) for name in queues.values()) + len(" (result)")
    _out(f"{'QUEUE'.ljust(width)}  MESSAGES (approximate)   {account.endpoint}")
    for role, name in queues.items():
        depth = depths[role]
        _out(f"{f'{name} ({role})'.ljust(width)}  {'missing' if depth is None else depth}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print a JSON Schema of the contract."""
    from producer.schemas import render  # noqa: PLC0415 - only this command needs it

    sys.stdout.write(render(args.name))
    return EXIT_OK


# ---- command line --------------------------------------------------------------------------------


def _account(args: argparse.Namespace) -> StorageAccount:
    """The storage target from the options, then the environment, then local Azurite."""
    account_url = args.account_url
    connection_string = args.connection_string
    if account_url is not None and connection_string is not None:
        msg = "give --connection-string or --account-url, not both"
        raise UsageError(msg)
    if account_url is None and connection_string is None:
        connection_string = os.environ.get("CERTSTATE_CONNECTION_STRING") or os.environ.get("AzureWebJobsStorage")  # noqa: SIM112 - the Functions setting's exact name
        if not connection_string:
            connection_string = None
            account_url = os.environ.get("AzureWebJobsStorage__queueServiceUri") or None  # noqa: SIM112
    args.local_default = account_url is None and connection_string is None
    return StorageAccount(
        connection_string, account_url=account_url, retry_total=args.retries, connection_timeout=args.timeout
    )


def _queue_name(value: str) -> str:
    if problem := queue_name_problem(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            msg = f"expected a whole number >= {minimum}, not {value!r}"
            raise argparse.ArgumentTypeError(msg)
        return number

    return parse


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number <= 3600:
        msg = f"expected seconds between 0 and 3600, not {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _version() -> str:
    try:
        return metadata.version("certstate")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every subcommand explains itself with --help."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Validate, send, watch and replay certificate-state updates: the JSON messages the certstate\n"
            "function reads from its input queue and turns into Microsoft Graph PATCH requests."
        ),
        epilog=EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    storage = argparse.ArgumentParser(add_help=False)
    where = storage.add_argument_group("where the queues are (default: local Azurite on 127.0.0.1:10001)")
    # Not a mutually exclusive group: argparse drops a parent's group title for those (StorageAccount checks).
    where.add_argument(
        "--connection-string",
        metavar="CS",
        help="storage connection string (default: $CERTSTATE_CONNECTION_STRING, then $AzureWebJobsStorage)",
    )
    where.add_argument(
        "--account-url",
        metavar="URL",
        help="https://<account>.queue.core.windows.net, signed in with DefaultAzureCredential",
    )
    where.add_argument(
        "--retries", type=_count(0), default=3, metavar="N", help="retries of a failed storage call (default 3)"
    )
    where.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS", help="connect timeout (default 10)")
    where.add_argument("--verbose", "-v", action="store_true", help="show the Azure SDK's log on stderr")
    input_queue = argparse.ArgumentParser(add_help=False)
    input_queue.add_argument(
        "--input-queue",
        type=_queue_name,
        default=None,
        metavar="NAME",
        help="input queue (default: $INPUT_QUEUE_NAME or certificate-state-updates)",
    )
    result_queue = argparse.ArgumentParser(add_help=False)
    result_queue.add_argument(
        "--result-queue",
        type=_queue_name,
        default=None,
        metavar="NAME",
        help="result queue (default: $RESULT_QUEUE_NAME or certificate-state-results)",
    )

    validate = commands.add_parser(
        "validate",
        help="check messages offline (exit 1 if any is invalid)",
        description=(
            "Check messages against the contract without sending anything. FILE holds one JSON object\n"
            "(pretty-printed or not) or JSON Lines: one object per line, blank lines ignored. `-` reads stdin.\n"
            "Each problem is printed as `line N: field: reason`."
        ),
        epilog="examples:\n  certstate validate examples/seed-routes/*.json\n  producer-job | certstate validate -\n\n"
        + EXIT_CODES,
        formatter_class=formatter,
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="message file(s), or - for stdin")
    validate.set_defaults(run=cmd_validate, storage=False)

    send = commands.add_parser(
        "send",
        parents=[storage, input_queue],
        help="validate a file, then enqueue every message",
        description=(
            "Validate every message of FILE (one JSON object or JSON Lines; - reads stdin); if any is\n"
            "invalid, list the problems and send nothing (exit 1). Otherwise put each message on the input\n"
            "queue, encoded as host.json's messageEncoding says, and print a summary line."
        ),
        epilog=(
            "examples:\n  certstate send examples/seed-routes/1-ios-scep-seed-example.json\n"
            "  certstate send --create-queue --progress updates.jsonl\n"
            "  certstate send --json updates.jsonl > sent.jsonl    # line, messageId, correlationId per message\n\n"
            f"{TARGETS}\n\n{EXIT_CODES}"
        ),
        formatter_class=formatter,
    )
    send.add_argument("file", metavar="FILE", help="message file, or - for stdin")
    send.add_argument(
        "--encoding",
        choices=("none", "base64"),
        default=None,
        help="queue message encoding (default: host.json's messageEncoding; the function reads both)",
    )
    send.add_argument("--create-queue", action="store_true", help="create the input queue if it does not exist")
    send.add_argument(
        "--concurrency", type=_count(1), default=8, metavar="N", help="messages in flight at once (default 8)"
    )
    send.add_argument("--progress", action="store_true", help="show progress on stderr even when it is not a TTY")
    send.add_argument("--json", action="store_true", help="print line, messageId and correlationId as JSON Lines")
    send.set_defaults(run=cmd_send, storage=True)

    results = commands.add_parser(
        "results",
        parents=[storage, result_queue],
        help="show outcomes from the result queue",
        description=(
            "Show outcomes (docs/outcomes.md) as a table or JSON Lines. By default they are peeked: left on\n"
            "the queue, and only the first 32 messages of the queue can be seen. With --remove they are\n"
            "received and deleted once printed; messages that do not match the filters are put back at once."
        ),
        epilog=(
            "examples:\n  certstate results\n  certstate results --status failed --json | jq .error\n"
            "  certstate results --follow --remove --correlation-id order-4711\n\n"
            f"{TARGETS}\n\n{EXIT_CODES}"
        ),
        formatter_class=formatter,
    )
    results.add_argument("--status", choices=[s.value for s in Status], help="only outcomes with this status")
    results.add_argument("--correlation-id", metavar="ID", help="only outcomes with this correlationId")
    results.add_argument("--json", action="store_true", help="print each outcome as one JSON line")
    results.add_argument("--remove", action="store_true", help="delete the outcomes printed (consume them)")
    results.add_argument(
        "--max", type=_count(1), default=PEEK_LIMIT, metavar="N", help="at most N outcomes per read (default 32)"
    )
    results.add_argument("--follow", "-f", action="store_true", help="keep polling until Ctrl-C")
    results.add_argument(
        "--interval", type=_seconds, default=2.0, metavar="SECONDS", help="seconds between polls (default 2)"
    )
    results.set_defaults(run=cmd_results, storage=True)

    replay = commands.add_parser(
        "replay",
        parents=[storage, input_queue, result_queue],
        help="re-enqueue the original message of failed outcomes",
        description=(
            "Find `failed` outcomes on the result queue and put the message each one carries (`request`)\n"
            "back on the input queue, unchanged. The whole result queue is scanned; what is not replayed\n"
            "and removed is made visible again at once. Duplicate outcomes of one message are replayed once."
        ),
        epilog=(
            "examples:\n  certstate replay --dry-run\n  certstate replay --error-code graphForbidden --remove\n"
            "  certstate replay --correlation-id order-4711\n\n"
            "Without --remove the outcomes stay, so running replay again sends them again.\n"
            "Exit 1 when an outcome could not be replayed (no request, or the request is invalid).\n\n"
            f"{TARGETS}\n\n{EXIT_CODES}"
        ),
        formatter_class=formatter,
    )
    replay.add_argument("--correlation-id", metavar="ID", help="only outcomes with this correlationId")
    replay.add_argument("--error-code", metavar="CODE", help="only outcomes with this error code (graphThrottled, …)")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed; send and remove nothing")
    replay.add_argument("--remove", action="store_true", help="delete each outcome once its message is re-enqueued")
    replay.set_defaults(run=cmd_replay, storage=True)

    stats = commands.add_parser(
        "stats",
        parents=[storage, input_queue, result_queue],
        help="approximate depth of the input, result and poison queues",
        description="Approximate message counts of the input, result and <input>-poison queues (missing ones say so).",
        epilog=f"{TARGETS}\n\n{EXIT_CODES}",
        formatter_class=formatter,
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(run=cmd_stats, storage=True)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of a message or an outcome",
        description="Print the JSON Schema (draft 2020-12) of the input message or of the outcome.",
        formatter_class=formatter,
    )
    schema.add_argument("name", choices=("message", "outcome"))
    schema.set_defaults(run=cmd_schema, storage=False)
    return parser


@contextlib.contextmanager
def _azure_logging(verbose: bool) -> Iterator[None]:
    """The SDK logs retries and credential attempts; a CLI shows them only when asked (-v)."""
    logger = logging.getLogger("azure")
    previous = logger.level
    handler: logging.Handler | None = None
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if handler is not None:
            logger.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see EXIT_CODES)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or argparse's own usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if getattr(args, "input_queue", "") is None:
        args.input_queue = default_input_queue()
    if getattr(args, "result_queue", "") is None:
        args.result_queue = default_result_queue()
    try:
        with _azure_logging(getattr(args, "verbose", False)):
            return int(args.run(args))
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except (UsageError, TargetError, InputError, StorageError) as err:
        return _failure(err, args)
    except BrokenPipeError:  # `certstate results --follow | head`: the reader has what it wanted
        with contextlib.suppress(OSError, ValueError):  # keep Python's exit-time flush quiet too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _failure(err: Exception, args: argparse.Namespace) -> int:
    """One line on stderr for an expected failure, and its exit code."""
    text = str(err)
    code = EXIT_USAGE
    if isinstance(err, InputError):
        code = EXIT_INVALID
    elif isinstance(err, StorageError):
        code, text = EXIT_STORAGE, err.message
        if isinstance(err, QueueNotFound) and args.command == "send":
            text += " (certstate send --create-queue creates it)"
        elif not isinstance(err, QueueNotFound) and getattr(args, "local_default", False):
            text += " (is Azurite running? python -m devstack.azurite; or pass --connection-string)"
    _err(f"{PROG} {args.command}: error: {text}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
