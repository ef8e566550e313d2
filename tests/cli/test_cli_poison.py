"""`certstate poison list|show|retry` against Azurite: what the host gave up on, seen and sent back."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator

import pytest
from azure.storage.queue import QueueClient

from producer.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from tests.cli.harness import Queues, Run
from tests.cli.samples import request

Cli = Callable[..., Run]


@pytest.fixture
def poison(queues: Queues) -> Iterator[QueueClient]:
    """The input queue's poison twin, created (as the host does when it first poisons a message)."""
    queue = QueueClient.from_connection_string(queues.connection_string, f"{queues.input.queue_name}-poison")
    queue.create_queue()
    yield queue
    queue.delete_queue()
    queue.close()


def test_list_shows_every_poison_message_with_what_it_names(cli: Cli, queues: Queues, poison: QueueClient):
    raw = poison.send_message(json.dumps(request("raw-one"))).id
    encoded = poison.send_message(base64.b64encode(json.dumps(request("b64-one")).encode()).decode()).id
    junk = poison.send_message("<<not json>>").id
    for i in range(40):  # more than one page
        poison.send_message(json.dumps(request(f"bulk-{i:02d}")))
    run = cli("poison", "list", *queues.input_args)
    assert run.code == EXIT_OK
    header, *rows = run.out.splitlines()
    assert header.split()[:2] == ["MESSAGE", "ID"]
    assert len(rows) == 43
    by_id = {line.split()[0]: line for line in rows}
    assert "raw-one" in by_id[raw]
    assert "iosScepCertificateProfile" in by_id[raw]
    assert "b64-one" in by_id[encoded]
    assert "(not a JSON message)" in by_id[junk]
    assert run.err == f"43 messages on '{poison.queue_name}'\n"
    assert len(queues.contents(poison)) == 43  # listing changes nothing


def test_list_json_carries_the_stored_text(cli: Cli, queues: Queues, poison: QueueClient):
    poison.send_message("<<not json>>")
    run = cli("poison", "list", *queues.input_args, "--json")
    [item] = [json.loads(line) for line in run.out.splitlines()]
    assert (item["content"], item["json"], item["bytes"], item["correlationId"]) == ("<<not json>>", False, 12, None)


def test_a_missing_poison_queue_is_empty(cli: Cli, queues: Queues):
    run = cli("poison", "list", *queues.input_args)
    assert (run.code, run.out) == (EXIT_OK, "")
    assert run.err == f"no poison queue '{queues.input.queue_name}-poison': nothing was ever poisoned there\n"


def test_show_prints_one_message_in_full(cli: Cli, queues: Queues, poison: QueueClient):
    message_id = poison.send_message(json.dumps(request("shown"))).id
    run = cli("poison", "show", message_id, *queues.input_args)
    assert run.code == EXIT_OK
    lines = run.out.splitlines()
    assert lines[0] == f"message id   {message_id}"
    assert json.loads("\n".join(lines[lines.index("content") + 1 :])) == request("shown")
    as_json = json.loads(cli("poison", "show", message_id, *queues.input_args, "--json").out)
    assert (as_json["id"], json.loads(as_json["content"])) == (message_id, request("shown"))
    missing = cli("poison", "show", "no-such-id", *queues.input_args)
    assert (missing.code, missing.err) == (EXIT_INVALID, f"no message no-such-id on '{poison.queue_name}'\n")


def test_retry_sends_the_stored_text_back_unchanged_and_deletes_it(cli: Cli, queues: Queues, poison: QueueClient):
    stored = base64.b64encode(json.dumps(request("again")).encode()).decode()
    wanted = poison.send_message(stored).id
    other = poison.send_message(json.dumps(request("stays"))).id
    run = cli("poison", "retry", wanted, *queues.input_args)
    assert run.code == EXIT_OK
    [said, summary] = run.out.splitlines()
    assert said.startswith(f"sent back poison message {wanted} to '{queues.input.queue_name}' as message ")
    assert summary == f"sent back 1 message from '{poison.queue_name}' to '{queues.input.queue_name}'"
    assert queues.contents(queues.input) == [stored]
    assert [m.id for m in poison.peek_messages()] == [other]


def test_retry_all_dry_run_and_json(cli: Cli, queues: Queues, poison: QueueClient):
    ids = [poison.send_message(json.dumps(request(f"p-{i}"))).id for i in range(35)]
    dry = cli("poison", "retry", "--all", "--dry-run", *queues.input_args)
    assert dry.code == EXIT_OK
    assert (
        dry.out.splitlines()[-1]
        == f"would send back 35 messages from '{poison.queue_name}' to '{queues.input.queue_name}'"
    )
    assert queues.contents(queues.input) == []
    assert len(queues.contents(poison)) == 35
    run = cli("poison", "retry", "--all", "--json", *queues.input_args)
    reports = [json.loads(line) for line in run.out.splitlines()]
    assert sorted(r["id"] for r in reports) == sorted(ids)
    assert {r["action"] for r in reports} == {"sentBack"}
    assert len(queues.contents(queues.input)) == 35
    assert queues.contents(poison) == []


def test_retry_names_what_it_could_not_find(cli: Cli, queues: Queues, poison: QueueClient):
    found = poison.send_message("x").id
    run = cli("poison", "retry", found, "gone-1", *queues.input_args)
    assert run.code == EXIT_INVALID
    assert run.err == f"no message gone-1 on '{poison.queue_name}'\n"
    assert queues.contents(queues.input) == ["x"]


@pytest.mark.parametrize("argv", [["poison", "retry"], ["poison", "retry", "some-id", "--all"]])
def test_retry_needs_ids_or_all_not_both(cli: Cli, argv: list[str]):
    run = cli(*argv)
    assert run.code == EXIT_USAGE
    assert run.err.startswith("certstate poison retry: error: name the messages to send back")
