"""Every command's --json: stdout is JSON and nothing else, whatever the command did; the words go to stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from azure.storage.queue import QueueClient

from shared.contract.errors import ErrorCode
from shared.contract.outcomes import Status
from tests.cli.harness import Queues, Run
from tests.cli.samples import outcome_json, request

Cli = Callable[..., Run]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def parsed(run: Run) -> list[object]:
    """Each stdout line as JSON (schema prints one pretty-printed document)."""
    assert run.out, run.err
    try:
        return [json.loads(run.out)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in run.out.splitlines()]


def test_every_command_prints_json_with_json(cli: Cli, queues: Queues, tmp_path: Path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(request(f"j-{i}")) + "\n" for i in range(3)), encoding="utf-8")
    queues.put_outcomes(
        outcome_json(Status.SUCCEEDED, "j-ok", "m-ok", warnings=("a warning",)),
        outcome_json(Status.FAILED, "j-failed", "m-failed", error_code=ErrorCode.GRAPH_THROTTLED),
    )
    with QueueClient.from_connection_string(queues.connection_string, f"{queues.input.queue_name}-poison") as poison:
        poison.create_queue()
        poisoned = poison.send_message(json.dumps(request("j-poison"))).id
        runs = {
            "validate": cli("validate", "--json", str(batch), str(EXAMPLES / "invalid" / "not-json.txt")),
            "send": cli("send", "--json", str(batch), *queues.input_args),
            "results": cli("results", "--json", *queues.result_args),
            "replay": cli("replay", "--json", "--dry-run", *queues.args),
            "stats": cli("stats", "--json", *queues.args),
            "schema": cli("schema", "outcome", "--json"),
            "poison list": cli("poison", "list", "--json", *queues.input_args),
            "poison show": cli("poison", "show", poisoned, "--json", *queues.input_args),
            "poison retry": cli("poison", "retry", poisoned, "--json", *queues.input_args),
        }
        poison.delete_queue()
    documents = {name: parsed(run) for name, run in runs.items()}
    assert len(documents["validate"]) == 4
    assert len(documents["send"]) == 3
    assert [d["correlationId"] for d in documents["results"]] == ["j-ok", "j-failed"]  # type: ignore[index]
    assert documents["results"][0]["warnings"] == ["a warning"]  # type: ignore[index]
    assert documents["replay"][0]["action"] == "wouldReplay"  # type: ignore[index]
    assert documents["stats"][0]["result"]["approximateMessageCount"] == 2  # type: ignore[index]
    assert documents["schema"][0]["title"]  # type: ignore[index]
    assert documents["poison list"][0]["id"] == poisoned  # type: ignore[index]
    assert documents["poison show"][0]["correlationId"] == "j-poison"  # type: ignore[index]
    assert documents["poison retry"][0]["action"] == "sentBack"  # type: ignore[index]
