"""`certstate send`, `results`, `replay` and `stats` against Azurite, and what they do when storage is not there."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.azurite import Azurite
from producer.cli import console, tables
from producer.cli.exits import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_STORAGE
from shared.contract.errors import ErrorCode
from shared.contract.outcomes import Status
from tests.cli.conftest import Queues, Run
from tests.cli.samples import outcome_json, request, unreachable_connection_string

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Cli = Callable[..., Run]


@pytest.fixture(autouse=True)
def restores_are_exact(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every message the CLI puts back was received and kept: no restore of a deleted or already restored one."""
    from azure.storage.queue import QueueClient

    original = QueueClient.update_message
    failures: list[Exception] = []

    def spy(self: QueueClient, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except Exception as err:
            failures.append(err)
            raise

    monkeypatch.setattr(QueueClient, "update_message", spy)
    yield
    assert failures == []


def jsonl(tmp_path: Path, *documents: Any) -> str:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in documents), encoding="utf-8")
    return str(path)


def put_outcomes(queues: Queues, *texts: str) -> None:
    for text in texts:
        queues.result.send_message(text)


# ---- send -----------------------------------------------------------------------------------------


def test_send_enqueues_every_message_as_written(cli: Cli, queues: Queues):
    run = cli("send", str(EXAMPLES / "batch.jsonl"), *queues.input_args)
    assert run.code == EXIT_OK, run.err
    assert run.out.startswith(f"sent 7 messages to {queues.input.queue_name!r} at http://127.0.0.1:")
    assert "(raw JSON, " in run.out
    assert run.err == ""  # stderr is not a TTY and --progress was not given
    sent = sorted(queues.contents(queues.input))
    written = sorted(ln for ln in (EXAMPLES / "batch.jsonl").read_text().splitlines() if ln)
    assert [json.loads(s) for s in sent] == [json.loads(w) for w in written]


def test_send_progress_and_json_report(cli: Cli, queues: Queues, tmp_path: Path):
    path = jsonl(tmp_path, *(request(f"m-{i}") for i in range(5)))
    run = cli("send", path, *queues.input_args, "--progress", "--json", "--concurrency", "1")
    assert run.code == EXIT_OK
    assert "\r  sent 5/5\n" in run.err
    assert "sent 5 messages to" in run.err  # the summary stays off stdout, which is pure JSON Lines
    rows = [json.loads(r) for r in run.out.splitlines()]
    assert [(r["line"], r["correlationId"]) for r in rows] == [(i + 1, f"m-{i}") for i in range(5)]
    assert [r["messageId"] for r in rows] == [m.id for m in queues.input.peek_messages(max_messages=32)]


def test_send_base64_when_asked(cli: Cli, queues: Queues):
    run = cli("send", str(EXAMPLES / "dry-run.json"), *queues.input_args, "--encoding", "base64")
    assert run.code == EXIT_OK
    [stored] = queues.contents(queues.input)
    assert json.loads(base64.b64decode(stored)) == json.loads((EXAMPLES / "dry-run.json").read_text())


def test_send_refuses_a_file_with_any_invalid_line(cli: Cli, queues: Queues, tmp_path: Path):
    path = jsonl(tmp_path, request("a"), {**request("b"), "update": {"certificateKeyLength": None}}, request("c"))
    run = cli("send", path, *queues.input_args)
    assert run.code == EXIT_INVALID
    assert run.err.splitlines() == [
        "line 2: update.certificateKeyLength: null is not allowed here: certificateKeyLength is not nullable in Graph",
        "nothing sent: 1 of 3 messages invalid",
    ]
    assert queues.contents(queues.input) == []


def test_send_reads_stdin(cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(request("stdin")).encode())))
    run = cli("send", "-", *queues.input_args)
    assert run.code == EXIT_OK
    assert [json.loads(c)["correlationId"] for c in queues.contents(queues.input)] == ["stdin"]


def test_send_to_a_missing_queue_exits_3_unless_asked_to_create_it(
    cli: Cli, azurite: Azurite, queue_names: Callable[[str], str]
):
    name = queue_names("new")
    target = ["--connection-string", azurite.connection_string, "--input-queue", name]
    missing = cli("send", str(EXAMPLES / "dry-run.json"), *target)
    assert missing.code == EXIT_STORAGE
    assert missing.err == (
        f"certstate send: error: queue {name!r} at {azurite.queue_endpoint} does not exist "
        "(certstate send --create-queue creates it)\n"
    )
    created = cli("send", str(EXAMPLES / "dry-run.json"), *target, "--create-queue")
    assert created.code == EXIT_OK
    stats = cli("stats", *target, "--json")
    assert json.loads(stats.out)["input"] == {"name": name, "approximateMessageCount": 1}
    from azure.storage.queue import QueueClient

    with QueueClient.from_connection_string(azurite.connection_string, name) as queue:
        queue.delete_queue()


def test_ctrl_c_during_send_says_how_far_it_got(
    cli: Cli, queues: Queues, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    original = console.Progress.__call__

    def interrupt_after_two(self: Any, sent: int, total: int) -> None:
        original(self, sent, total)
        if sent == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(console.Progress, "__call__", interrupt_after_two)
    path = jsonl(tmp_path, *(request(f"m-{i}") for i in range(5)))
    run = cli("send", path, *queues.input_args, "--concurrency", "1")
    assert run.code == EXIT_INTERRUPTED
    assert run.err == "interrupted: at least 2 of 5 sent\ncertstate: interrupted\n"
    assert len(queues.contents(queues.input)) == 2


def test_the_module_runs_as_a_program_with_its_exit_code():
    import subprocess
    import sys

    invalid = EXAMPLES / "invalid" / "not-json.txt"
    result = subprocess.run(
        [sys.executable, "-m", "producer.cli", "validate", str(invalid)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_INVALID
    assert result.stdout.startswith("line 1: message is not valid JSON")
    assert result.stderr == ""


# ---- storage that is not there --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["send", str(EXAMPLES / "dry-run.json")],
        ["results"],
        ["results", "--remove"],
        ["replay"],
        ["stats"],
    ],
    ids=["send", "results", "results-remove", "replay", "stats"],
)
def test_an_unreachable_account_is_one_line_and_exit_3(cli: Cli, closed_port: int, argv: list[str]):
    run = cli(*argv, "--connection-string", unreachable_connection_string(closed_port), "--retries", "0")
    assert run.code == EXIT_STORAGE
    assert run.out == ""
    assert run.err == (
        f"certstate {argv[0]}: error: cannot reach the queue service at "
        f"http://127.0.0.1:{closed_port}/devstoreaccount1: Connection refused\n"
    )


def test_default_target_is_local_azurite_with_a_hint(cli: Cli, monkeypatch: pytest.MonkeyPatch):
    for name in ("CERTSTATE_CONNECTION_STRING", "AzureWebJobsStorage", "AzureWebJobsStorage__queueServiceUri"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("producer.sender.DEVELOPMENT_STORAGE", unreachable_connection_string(9))
    run = cli("stats", "--retries", "0", "--timeout", "1")
    assert run.code == EXIT_STORAGE
    assert "127.0.0.1:9/devstoreaccount1" in run.err
    assert "is Azurite running? python -m devstack.azurite" in run.err


@pytest.mark.parametrize("variable", ["CERTSTATE_CONNECTION_STRING", "AzureWebJobsStorage"])
def test_connection_string_from_the_environment(
    cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch, variable: str
):
    monkeypatch.delenv("CERTSTATE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv(variable, queues.connection_string)
    monkeypatch.setenv("INPUT_QUEUE_NAME", queues.input.queue_name)
    monkeypatch.setenv("RESULT_QUEUE_NAME", queues.result.queue_name)
    run = cli("stats", "--json")
    assert run.code == EXIT_OK, run.err
    report = json.loads(run.out)
    assert report["input"] == {"name": queues.input.queue_name, "approximateMessageCount": 0}
    assert report["result"]["name"] == queues.result.queue_name
    assert report["poison"] == {"name": f"{queues.input.queue_name}-poison", "approximateMessageCount": None}


def test_account_url_from_the_environment_uses_default_azure_credential(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, closed_port: int
):
    from azure.core.exceptions import ClientAuthenticationError

    class NoIdentity:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    monkeypatch.delenv("CERTSTATE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__queueServiceUri", f"https://127.0.0.1:{closed_port}")
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", NoIdentity)
    run = cli("stats", "--retries", "0")
    assert run.code == EXIT_STORAGE
    assert "could not authenticate: DefaultAzureCredential failed to retrieve a token" in run.err


# ---- stats ----------------------------------------------------------------------------------------


def test_stats_table(cli: Cli, queues: Queues):
    queues.input.send_message(json.dumps(request()))
    put_outcomes(queues, outcome_json(Status.SUCCEEDED, "a", "m-a"), outcome_json(Status.SUCCEEDED, "b", "m-b"))
    run = cli("stats", *queues.args)
    assert run.code == EXIT_OK
    rows = [r.split() for r in run.out.splitlines()[1:]]
    assert rows == [
        [queues.input.queue_name, "(input)", "1"],
        [queues.result.queue_name, "(result)", "2"],
        [f"{queues.input.queue_name}-poison", "(poison)", "missing"],
    ]


# ---- results --------------------------------------------------------------------------------------


def test_results_peeks_a_table_and_leaves_the_queue_alone(cli: Cli, queues: Queues):
    put_outcomes(
        queues,
        outcome_json(Status.SUCCEEDED, "order-1", "00000000-0000-4000-8000-000000000001"),
        outcome_json(
            Status.FAILED, "order-2", "00000000-0000-4000-8000-000000000002", error_code=ErrorCode.GRAPH_THROTTLED
        ),
    )
    run = cli("results", *queues.result_args)
    assert run.code == EXIT_OK
    header, first, second = run.out.splitlines()
    starts = [sum(width + 2 for _, width in tables.COLUMNS[:n]) for n in range(len(tables.COLUMNS))]
    for (name, _), start, value in zip(tables.COLUMNS, starts, first.split(), strict=True):
        assert header[start:].startswith(name)  # fixed width: every row lines up under its header
        assert first[start:].startswith(value)
    assert first.split() == [
        "succeeded", "order-1", "00000000-0000-4000-8000-000000000001", "1", "200", "-", "2026-11-27T14:03:11.402Z",
    ]  # fmt: skip
    assert second.split() == [
        "failed", "order-2", "00000000-0000-4000-8000-000000000002", "5", "429", "graphThrottled",
        "2026-11-27T14:03:11.402Z",
    ]  # fmt: skip
    assert len(queues.contents(queues.result)) == 2


def test_results_filters_and_json(cli: Cli, queues: Queues):
    put_outcomes(
        queues,
        outcome_json(Status.SUCCEEDED, "order-1", "m-1"),
        outcome_json(Status.FAILED, "order-2", "m-2", error_code=ErrorCode.GRAPH_FORBIDDEN),
        outcome_json(Status.REJECTED, "order-2", "m-3", error_code=ErrorCode.VALIDATION_FAILED),
        "not an outcome",
    )
    run = cli("results", *queues.result_args, "--correlation-id", "order-2", "--status", "failed", "--json")
    assert run.code == EXIT_OK
    [only] = [json.loads(r) for r in run.out.splitlines()]
    assert (only["messageId"], only["error"]["code"], only["request"]["correlationId"]) == (
        "m-2",
        "graphForbidden",
        "order-2",
    )
    assert "not an outcome" in run.err
    nothing = cli("results", *queues.result_args, "--status", "expired")
    assert (nothing.out, nothing.err.splitlines()[-1]) == ("", f"no matching outcomes on {queues.result.queue_name!r}")


def test_results_remove_deletes_only_what_it_printed(cli: Cli, queues: Queues):
    put_outcomes(
        queues,
        *(outcome_json(Status.SUCCEEDED, f"ok-{i}", f"m-ok-{i}") for i in range(3)),
        *(
            outcome_json(Status.FAILED, f"bad-{i}", f"m-bad-{i}", error_code=ErrorCode.GRAPH_NOT_FOUND)
            for i in range(2)
        ),
    )
    run = cli("results", *queues.result_args, "--remove", "--status", "succeeded", "--max", "2", "--json")
    assert run.code == EXIT_OK
    assert sorted(json.loads(r)["correlationId"] for r in run.out.splitlines()) == ["ok-0", "ok-1"]
    # Everything not printed is visible again at once (peek sees only visible messages).
    left = sorted(json.loads(c)["correlationId"] for c in queues.contents(queues.result))
    assert left == ["bad-0", "bad-1", "ok-2"]


def test_results_remove_without_the_right_to_update_says_when_messages_come_back(
    cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch
):
    from azure.core.exceptions import HttpResponseError
    from azure.storage.queue import QueueClient

    def refuse(self: QueueClient, *args: Any, **kwargs: Any) -> None:
        err = HttpResponseError("This request is not authorized to perform this operation using this permission.")
        err.status_code = 403
        err.error_code = "AuthorizationPermissionMismatch"  # type: ignore[attr-defined]  # the storage SDK adds it
        raise err

    put_outcomes(queues, outcome_json(Status.SUCCEEDED, "ok", "m-1"), outcome_json(Status.REJECTED, "no", "m-2"))
    monkeypatch.setattr(QueueClient, "update_message", refuse)
    run = cli("results", *queues.result_args, "--remove", "--status", "succeeded")
    assert run.code == EXIT_OK
    assert run.err == (
        "note: could not make 1 message visible again at once (403 AuthorizationPermissionMismatch); "
        "they reappear within 60 s\n"
    )
    assert queues.contents(queues.result) == []  # the rejected one is still hidden; the succeeded one is gone


def test_results_remove_pages_through_more_than_32(cli: Cli, queues: Queues):
    put_outcomes(queues, *(outcome_json(Status.SUCCEEDED, f"ok-{i}", f"m-{i}") for i in range(40)))
    run = cli("results", *queues.result_args, "--remove", "--max", "100", "--json")
    assert len(run.out.splitlines()) == 40
    assert queues.contents(queues.result) == []


def test_results_follow_polls_until_ctrl_c(cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch):
    put_outcomes(queues, outcome_json(Status.SUCCEEDED, "first", "m-1"))
    polls: list[float] = []

    def fake_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            put_outcomes(queues, outcome_json(Status.FAILED, "second", "m-2", error_code=ErrorCode.GRAPH_UNAVAILABLE))
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", fake_sleep)  # the CLI waits between polls with time.sleep
    run = cli("results", *queues.result_args, "--follow", "--interval", "0.5")
    assert run.code == EXIT_INTERRUPTED
    assert run.err == "certstate: interrupted\n"
    lines = run.out.splitlines()
    assert lines[0].startswith("STATUS")
    assert [ln.split()[1] for ln in lines[1:]] == ["first", "second"]  # each outcome once, though peeked twice
    assert polls == [0.5, 0.5]


# ---- replay ---------------------------------------------------------------------------------------


def test_replay_dry_run_changes_nothing(cli: Cli, queues: Queues):
    put_outcomes(queues, outcome_json(Status.FAILED, "order-9", "m-9", error_code=ErrorCode.GRAPH_THROTTLED))
    run = cli("replay", *queues.args, "--dry-run")
    assert run.code == EXIT_OK
    assert run.out.splitlines() == [
        "would replay order-9 (failed graphThrottled, message m-9)",
        "dry run: 1 would be replayed, 0 skipped; nothing sent or removed",
    ]
    assert queues.contents(queues.input) == []
    assert len(queues.contents(queues.result)) == 1  # visible again at once


def test_replay_re_enqueues_the_request_unchanged_and_removes_when_asked(cli: Cli, queues: Queues):
    put_outcomes(
        queues,
        outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED),
        outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED),  # a duplicate outcome
        outcome_json(Status.FAILED, "order-2", "m-2", error_code=ErrorCode.GRAPH_FORBIDDEN),
        outcome_json(Status.SUCCEEDED, "order-3", "m-3"),
    )
    run = cli("replay", *queues.args, "--error-code", "graphThrottled", "--remove")
    assert run.code == EXIT_OK
    [replayed, summary] = run.out.splitlines()
    assert replayed.startswith("replayed order-1 (failed graphThrottled, message m-1) as message ")
    assert summary == (f"replayed 1 onto {queues.input.queue_name!r}, 0 skipped; removed 2 outcome messages")
    [sent] = queues.contents(queues.input)
    assert json.loads(sent) == request("order-1")
    left = sorted(json.loads(c)["correlationId"] for c in queues.contents(queues.result))
    assert left == ["order-2", "order-3"]


def test_replay_by_correlation_id_keeps_outcomes_without_remove(cli: Cli, queues: Queues):
    put_outcomes(
        queues,
        outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED),
        outcome_json(Status.FAILED, "order-2", "m-2", error_code=ErrorCode.GRAPH_THROTTLED),
    )
    run = cli("replay", *queues.args, "--correlation-id", "order-2")
    assert run.code == EXIT_OK
    assert [json.loads(c)["correlationId"] for c in queues.contents(queues.input)] == ["order-2"]
    assert len(queues.contents(queues.result)) == 2


def test_replay_skips_what_it_cannot_replay_and_exits_1(cli: Cli, queues: Queues):
    invalid = json.loads(outcome_json(Status.FAILED, "order-5", "m-5", error_code=ErrorCode.INTERNAL_ERROR))
    invalid["request"]["update"] = {}
    put_outcomes(
        queues,
        outcome_json(Status.FAILED, "order-4", "m-4", error_code=ErrorCode.INTERNAL_ERROR, with_request=False),
        json.dumps(invalid),
    )
    run = cli("replay", *queues.args, "--remove")
    assert run.code == EXIT_INVALID
    assert run.out.splitlines() == [
        "skipped order-4 (failed internalError, message m-4): the outcome carries no request",
        "skipped order-5 (failed internalError, message m-5): its request is invalid now: "
        "update: must set at least one property",
        f"replayed 0 onto {queues.input.queue_name!r}, 2 skipped; removed 0 outcome messages",
    ]
    assert len(queues.contents(queues.result)) == 2  # kept, and visible


def test_replay_with_nothing_to_do(cli: Cli, queues: Queues):
    put_outcomes(queues, outcome_json(Status.SUCCEEDED, "fine", "m-1"))
    run = cli("replay", *queues.args)
    assert (run.code, run.out) == (EXIT_OK, "no failed outcomes match\n")
    assert len(queues.contents(queues.result)) == 1


def test_replay_to_a_missing_input_queue_puts_the_outcomes_back(
    cli: Cli, queues: Queues, queue_names: Callable[[str], str]
):
    put_outcomes(queues, outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED))
    missing = queue_names("gone")
    run = cli("replay", *queues.result_args, "--input-queue", missing, "--remove")
    assert run.code == EXIT_STORAGE
    assert run.err.endswith(
        f"queue {missing!r} at {queues.connection_string.split('QueueEndpoint=')[1][:-1]} does not exist\n"
    )
    assert len(queues.contents(queues.result)) == 1


def test_results_on_a_missing_queue_exits_3(cli: Cli, azurite: Azurite, queue_names: Callable[[str], str]):
    name = queue_names("none")
    run = cli("results", "--connection-string", azurite.connection_string, "--result-queue", name)
    assert run.code == EXIT_STORAGE
    assert run.err == f"certstate results: error: queue {name!r} at {azurite.queue_endpoint} does not exist\n"
