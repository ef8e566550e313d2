"""`certstate validate`, `schema`, help and usage errors: nothing here needs a queue."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from producer.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from producer.cli.files import parse_entries
from producer.schemas import render
from tests.cli.harness import Run
from tests.cli.samples import request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Cli = Callable[..., Run]


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def line(document: object) -> str:
    return json.dumps(document)


def test_validate_one_pretty_printed_message(cli: Cli):
    run = cli("validate", str(EXAMPLES / "dry-run.json"))
    assert (run.code, run.out, run.err) == (EXIT_OK, "1 message checked: all valid\n", "")


def test_validate_json_lines_names_line_and_field(cli: Cli, tmp_path: Path):
    bad_length = {**request("b"), "update": {"certificateKeyLength": "2048"}}
    text = "\n".join(
        [
            line(request("a")),
            "",
            "   ",
            line(bad_length),
            "{not json}",
            line(request("c")),
            line({**request("d"), "x": 1}),
        ]
    )
    run = cli("validate", write(tmp_path, "batch.jsonl", text + "\n"))
    assert run.code == EXIT_INVALID
    assert run.out.splitlines() == [
        "line 4: update.certificateKeyLength: Input should be a valid integer",
        "line 5: message is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "line 7: x: unknown property 'x'",
        "5 messages checked: 3 invalid",
    ]


def test_validate_several_files_prefixes_each_problem(cli: Cli, tmp_path: Path):
    good = write(tmp_path, "good.json", line(request()))
    bad = write(tmp_path, "bad.json", line({**request(), "update": {}}))
    run = cli("validate", good, bad)
    assert run.code == EXIT_INVALID
    assert run.out.splitlines() == [
        f"{bad}: line 1: update: must set at least one property",
        "2 messages checked: 1 invalid",
    ]


def test_validate_reads_stdin(cli: Cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((line(request()) + "\n").encode())))
    run = cli("validate", "-")
    assert run.code == EXIT_OK
    assert run.out == "1 message checked: all valid\n"


def test_a_broken_pretty_printed_object_is_one_error_with_its_position(cli: Cli, tmp_path: Path):
    text = json.dumps(request(), indent=2).replace('"update"', '"update" ', 1).replace(",\n", "\n", 1)
    run = cli("validate", write(tmp_path, "broken.json", text))
    assert run.code == EXIT_INVALID
    [problem, summary] = run.out.splitlines()
    assert problem.startswith("line 1: message is not valid JSON: Expecting ',' delimiter: line 3 column 3")
    assert summary == "1 message checked: 1 invalid"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8 (invalid start byte at byte 0)"),
        (b"", "no messages: the file is empty"),
        (b"\n  \n", "no messages: the file is empty"),
    ],
)
def test_unreadable_content_is_invalid_input(cli: Cli, tmp_path: Path, content: bytes, expected: str):
    path = write(tmp_path, "input.json", content)
    run = cli("validate", path)
    assert run.code == EXIT_INVALID
    assert run.out.splitlines() == [f"{path}: {expected}", "0 messages checked; 1 file could not be read as messages"]
    send = cli("send", path, "--connection-string", "UseDevelopmentStorage=true")
    assert send.code == EXIT_INVALID
    assert send.err == f"certstate send: error: {path}: {expected}\n"


def test_counts_say_messages_and_unreadable_files_apart(cli: Cli, tmp_path: Path):
    good = write(tmp_path, "good.jsonl", line(request("a")) + "\n" + line(request("b")) + "\n")
    empty = write(tmp_path, "empty.json", "")
    run = cli("validate", good, empty)
    assert run.code == EXIT_INVALID
    assert run.out.splitlines()[-1] == "2 messages checked: all valid; 1 file could not be read as messages"


def test_validate_json_is_one_object_per_message(cli: Cli, tmp_path: Path):
    good = write(tmp_path, "batch.jsonl", line(request("a")) + "\n" + line({**request("b"), "x": 1}) + "\n")
    empty = write(tmp_path, "empty.json", "")
    run = cli("validate", "--json", good, empty)
    assert run.code == EXIT_INVALID
    reports = [json.loads(r) for r in run.out.splitlines()]
    assert reports == [
        {"file": good, "line": 1, "valid": True, "correlationId": "a", "problems": []},
        {"file": good, "line": 2, "valid": False, "correlationId": "b",
         "problems": [{"field": "x", "message": "unknown property 'x'"}]},
        {"file": empty, "line": None, "valid": False,
         "problems": [{"field": "file", "message": f"{empty}: no messages: the file is empty"}]},
    ]  # fmt: skip
    assert run.err == "2 messages checked: 1 invalid; 1 file could not be read as messages\n"


def test_a_file_that_cannot_be_opened_is_a_usage_error(cli: Cli, tmp_path: Path):
    missing = cli("validate", str(tmp_path / "nope.json"))
    assert (missing.code, missing.err) == (
        EXIT_USAGE,
        f"certstate validate: error: {tmp_path / 'nope.json'}: no such file\n",
    )
    directory = cli("send", str(tmp_path))
    assert (directory.code, directory.err) == (EXIT_USAGE, f"certstate send: error: {tmp_path}: is a directory\n")


def test_a_bom_and_a_base64_line_are_read_as_the_function_reads_them():
    import base64

    encoded = base64.b64encode(line(request("b64")).encode()).decode()
    entries = parse_entries(("\ufeff" + line(request("a")) + "\n" + encoded + "\n").encode())
    assert [(e.line, e.problems, (e.document or {}).get("correlationId")) for e in entries] == [
        (1, (), "a"),
        (2, (), "b64"),
    ]


@pytest.mark.parametrize("name", ["message", "outcome"])
def test_schema_prints_the_committed_schema(cli: Cli, name: str):
    run = cli("schema", name)
    assert run.code == EXIT_OK
    assert run.out == render(name)
    assert json.loads(run.out)["$schema"].startswith("https://json-schema.org/")


COMMANDS = ["validate", "send", "results", "replay", "stats", "schema", "poison list", "poison show", "poison retry"]


def test_help_explains_commands_examples_and_exit_codes(cli: Cli):
    run = cli("--help")
    assert run.code == EXIT_OK
    for text in ("validate", "send", "results", "replay", "poison", "stats", "schema", "examples:", "exit codes:"):
        assert text in run.out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_one_help_block_with_its_own_exit_codes(cli: Cli, command: str):
    sub = cli(*command.split(), "--help")
    assert sub.code == EXIT_OK
    assert sub.out.startswith(f"usage: certstate {command}")
    assert "--json" in sub.out
    assert sub.out.count("exit codes:") == 1
    assert sub.out.count("Local Azurite on 127.0.0.1:10001") <= 1  # where the queues are: said once, if at all
    codes = [ln.split()[0] for ln in sub.out.split("exit codes:")[1].splitlines() if ln.startswith("  ")]
    assert codes[0] == "0"
    if command in ("validate", "schema"):  # offline: no storage failure to report
        assert "3" not in codes
    if command in ("results", "stats", "schema", "poison list"):  # nothing they do is "invalid input"
        assert "1" not in codes


def test_schema_usage_and_required_text_agree(cli: Cli):
    run = cli("schema")
    assert run.code == EXIT_USAGE
    assert "usage: certstate schema [-h] [--json] {message,outcome,consent-check}" in run.err
    assert "the following arguments are required: {message,outcome,consent-check}" in run.err
    assert cli("schema", "message", "--json").out == render("message")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["results", "--status", "exploded"], "invalid choice: 'exploded'"),
        (["send", "x.json", "--input-queue", "Bad_Queue"], "'Bad_Queue' is not a queue name"),
        (["stats", "--retries", "-1"], "expected a whole number >= 0"),
        (["results", "--interval", "0"], "expected seconds between 0 and 3600"),
        (
            ["stats", "--connection-string", "a=b", "--account-url", "https://x"],
            "give --connection-string or --account-url, not both",
        ),
        (["schema", "everything"], "invalid choice: 'everything'"),
    ],
)
def test_usage_errors_exit_2(cli: Cli, argv: list[str], message: str):
    run = cli(*argv)
    assert run.code == EXIT_USAGE
    assert message in run.err


def test_bad_targets_are_usage_errors(cli: Cli):
    url = cli("stats", "--account-url", "http://myaccount.queue.core.windows.net")
    assert url.code == EXIT_USAGE
    assert url.err.startswith("certstate stats: error: account URL must be https://")
    malformed = cli("stats", "--connection-string", "AccountKey=s3cr3t;oops")
    assert malformed.code == EXIT_USAGE
    assert "malformed" in malformed.err
    assert "s3cr3t" not in malformed.err


def test_an_invalid_queue_name_from_the_environment_is_a_usage_error(cli: Cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("INPUT_QUEUE_NAME", "Not_Valid")
    run = cli("stats")
    assert run.code == EXIT_USAGE
    assert "'Not_Valid' is not a queue name" in run.err
