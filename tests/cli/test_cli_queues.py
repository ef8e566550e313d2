"""`certstate send` and `stats` against Azurite, and what every command does when storage is not there."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.azurite import Azurite
from producer.cli import console
from producer.cli.exits import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_STORAGE
from shared.contract.outcomes import Status
from tests.cli.harness import Queues, Run
from tests.cli.samples import outcome_json, request, unreachable_connection_string

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Cli = Callable[..., Run]


def jsonl(tmp_path: Path, *documents: Any) -> str:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in documents), encoding="utf-8")
    return str(path)


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
        ["poison", "list"],
        ["poison", "show", "some-id"],
        ["poison", "retry", "--all"],
    ],
    ids=["send", "results", "results-remove", "replay", "stats", "poison-list", "poison-show", "poison-retry"],
)
def test_an_unreachable_account_is_one_line_and_exit_3(cli: Cli, closed_port: int, argv: list[str]):
    run = cli(*argv, "--connection-string", unreachable_connection_string(closed_port), "--retries", "0")
    assert run.code == EXIT_STORAGE
    assert run.out == ""
    command = " ".join(argv[:2]) if argv[0] == "poison" else argv[0]
    assert run.err == (
        f"certstate {command}: error: cannot reach the queue service at "
        f"http://127.0.0.1:{closed_port}/devstoreaccount1: Connection refused\n"
    )


def test_default_target_is_local_azurite_with_a_hint(cli: Cli, monkeypatch: pytest.MonkeyPatch):
    for name in ("CERTSTATE_CONNECTION_STRING", "AzureWebJobsStorage", "AzureWebJobsStorage__queueServiceUri"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("producer.sender.DEVELOPMENT_STORAGE", unreachable_connection_string(9))
    run = cli("stats", "--retries", "0", "--timeout", "1")
    assert run.code == EXIT_STORAGE
    assert "127.0.0.1:9/devstoreaccount1" in run.err
    assert "is the local stack up? python -m devstack up" in run.err


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
    queues.put_outcomes(outcome_json(Status.SUCCEEDED, "a", "m-a"), outcome_json(Status.SUCCEEDED, "b", "m-b"))
    run = cli("stats", *queues.args)
    assert run.code == EXIT_OK
    rows = [r.split() for r in run.out.splitlines()[1:]]
    assert rows == [
        [queues.input.queue_name, "(input)", "1"],
        [queues.result.queue_name, "(result)", "2"],
        [f"{queues.input.queue_name}-poison", "(poison)", "missing"],
    ]


def test_results_on_a_missing_queue_exits_3(cli: Cli, azurite: Azurite, queue_names: Callable[[str], str]):
    name = queue_names("none")
    run = cli("results", "--connection-string", azurite.connection_string, "--result-queue", name)
    assert run.code == EXIT_STORAGE
    assert run.err == f"certstate results: error: queue {name!r} at {azurite.queue_endpoint} does not exist\n"


# ---- tenants --------------------------------------------------------------------------------------

TENANT_A, TENANT_B = "a0000000-0000-4000-8000-00000000000a", "b0000000-0000-4000-8000-00000000000b"


def test_send_to_a_tenant_sets_every_messages_tenant_and_refuses_another(cli: Cli, queues: Queues, tmp_path: Path):
    path = jsonl(tmp_path, request("m-1"), {**request("m-2"), "tenantId": TENANT_A.upper()})
    run = cli("send", path, *queues.input_args, "--tenant", TENANT_A.upper(), "--dry-run")
    assert run.code == EXIT_OK, run.err
    sent = [json.loads(text) for text in queues.contents(queues.input)]
    assert sorted((m["correlationId"], m["tenantId"], m["dryRun"]) for m in sent) == [
        ("m-1", TENANT_A, True), ("m-2", TENANT_A, True),
    ]  # fmt: skip
    other = jsonl(tmp_path, {**request("m-3"), "tenantId": TENANT_B})
    refused = cli("send", other, *queues.input_args, "--tenant", TENANT_A)
    assert refused.code == EXIT_INVALID
    assert f"line 1: tenantId: is '{TENANT_B}', but --tenant is {TENANT_A}" in refused.err
    bad = cli("send", other, *queues.input_args, "--tenant", "contoso.onmicrosoft.com")
    assert bad.code != EXIT_OK
    assert "must be a GUID" in bad.err


def test_stats_count_waiting_updates_and_outcomes_per_tenant(cli: Cli, queues: Queues, tmp_path: Path):
    cli("send", jsonl(tmp_path, request("m-1"), request("m-2")), *queues.input_args, "--tenant", TENANT_B)
    cli("send", jsonl(tmp_path, request("m-3")), *queues.input_args)
    queues.put_outcomes(
        outcome_json(Status.SUCCEEDED, "o-1", "00000000-0000-4000-8000-000000000001", tenant_id=TENANT_A),
        outcome_json(Status.FAILED, "o-2", "00000000-0000-4000-8000-000000000002", tenant_id=TENANT_A.upper()),
    )
    stats = json.loads(cli("stats", *queues.args, "--by-tenant", "--json").out)
    assert stats["byTenant"] == {
        TENANT_A: {"succeeded": 1, "failed": 1}, TENANT_B: {"waiting": 2}, "home": {"waiting": 1},
    }  # fmt: skip
    table = cli("stats", *queues.args, "--by-tenant").out
    assert "PER TENANT (the first 32 messages of each queue, peeked)" in table
    row = next(line for line in table.splitlines() if line.startswith(TENANT_A)).split()
    assert row == [TENANT_A, "0", "1", "0", "1", "0", "0"]  # waiting, then the statuses in Status order


def test_stats_by_tenant_counts_past_a_forged_envelope(cli: Cli, queues: Queues):
    queues.input.send_message(json.dumps({"certstateDeferral": {"messageId": "not-a-record\n"}, "message": {}}))
    queues.input.send_message(json.dumps(request("x")))
    run = cli("stats", *queues.args, "--by-tenant", "--json")
    assert run.code == EXIT_OK
    assert json.loads(run.out)["byTenant"] == {"home": {"waiting": 1}}  # the forgery is no update waiting
