"""Operator-safe output (issue 17, item 7): no table view prints a control character a terminal would act on.

The queues and the audit table hold what anyone with send rights wrote (a forged outcome, a poisoned
message, a rejected message's target), so each view gets values with terminal escapes, 8-bit CSI, line
breaks and bidi overrides, and must print them as `\\uXXXX`; `--json` must stay the same JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from producer.cli.exits import EXIT_INVALID, EXIT_OK
from shared.contract.audit import AuditSummary, outcome_row_key, partition_key
from tests.cli.harness import Queues, Run
from tests.cli.samples import request

Cli = Callable[..., Run]
TITLE = "\x1b]0;owned\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen
CSI = "\x9b31m"  # the 8-bit CSI: red, on terminals that read C1
RLO = "\u202e"  # right-to-left override
HOSTILE = f"a{TITLE}b{CLEAR}c{CSI}d{RLO}e\r\nforged row"
SHOWN = "a\\u001b]0;owned\\u0007b\\u001b[2Jc\\u009b31md\\u202ee\\u000d\\u000aforged row"
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
"""Anything a terminal acts on but the line breaks the CLI writes itself."""


def assert_safe(run: Run) -> None:
    found = UNSAFE.findall(run.out + run.err)
    assert found == [], found
    assert "forged row\n" not in run.out  # a value's line break never ends a printed line


def forged_outcome(**changes: Any) -> dict[str, Any]:
    """An outcome as anyone who may write to the result queue could put it there."""
    return {
        "schemaVersion": 1, "status": "failed", "correlationId": HOSTILE, "messageId": f"m{CLEAR}1",
        "dequeueCount": 5, "target": {"tenantId": HOSTILE, "profileType": "iosScepCertificateProfile"},
        "httpStatus": 404, "attempts": 1, "durationMs": 1, "completedAt": "2026-11-27T14:03:11.402Z",
        "warnings": [f"w{TITLE}"], "error": {"code": f"graph{CSI}", "message": HOSTILE},
        "request": request("order-1"), "truncated": [], **changes,
    }  # fmt: skip


def test_results_table_escapes_every_cell_and_warning(cli: Cli, queues: Queues):
    queues.put_outcomes(json.dumps(forged_outcome()))
    run = cli("results", *queues.result_args)
    assert run.code == EXIT_OK
    assert_safe(run)
    _, row, warning = run.out.splitlines()
    assert row.startswith("failed     a\\u001b]0;ow…  a\\u001b]0;owned\\u0007b…       m\\u001b[2J1   ")
    assert "graph\\u009b31m" in row
    assert warning == "  warning: w\\u001b]0;owned\\u0007"


def test_results_json_is_the_same_json_with_nothing_a_terminal_acts_on(cli: Cli, queues: Queues):
    stored = forged_outcome()
    queues.put_outcomes(json.dumps(stored))
    run = cli("results", *queues.result_args, "--json")
    assert_safe(run)
    assert json.loads(run.out) == stored
    assert "\\u009b31m" in run.out  # JSON's escape of a C1 control
    assert "\\u202e" in run.out  # and of a bidi control


def test_poison_list_and_show_escape_what_a_poisoned_message_holds(cli: Cli, queues: Queues):
    poison = QueueClient.from_connection_string(queues.connection_string, f"{queues.input.queue_name}-poison")
    poison.create_queue()
    stored = {**request("x"), "correlationId": HOSTILE, "profileType": CSI + RLO}
    try:
        message_id = poison.send_message(json.dumps(stored)).id  # JSON's escapes: what a queue can store
        listing = cli("poison", "list", *queues.input_args)
        assert listing.code == EXIT_OK
        assert_safe(listing)
        assert listing.out.splitlines()[1].endswith("  a\\u001b]0;owned\\u0007b…       \\u009b31m\\u202e")
        shown = cli("poison", "show", message_id, *queues.input_args)
        assert_safe(shown)
        lines = shown.out.splitlines()
        assert json.loads("\n".join(lines[lines.index("content") + 1 :])) == stored  # still the same JSON
        as_json = cli("poison", "show", message_id, *queues.input_args, "--json")
        assert_safe(as_json)
        assert json.loads(json.loads(as_json.out)["content"]) == stored
    finally:
        poison.delete_queue()
        poison.close()


def test_replay_lines_escape_the_outcome_s_ids(cli: Cli, queues: Queues):
    queues.put_outcomes(json.dumps(forged_outcome()))
    run = cli("replay", *queues.args, "--dry-run")
    assert run.code == EXIT_OK
    assert_safe(run)
    assert run.out.splitlines()[0] == f"would replay {SHOWN} (failed graph\\u009b31m, message m\\u001b[2J1)"


def test_history_escapes_what_the_audit_trail_kept(cli: Cli, queues: Queues, audit_table: TableClient):
    now = datetime.now(UTC)
    summary = AuditSummary(
        message_id=f"m{CLEAR}", status="rejected", completed_at=now, enqueued_at=now - timedelta(minutes=1),
        correlation_id=HOSTILE, code=f"validation{CSI}",
    )  # fmt: skip
    audit_table.upsert_entity({
        "PartitionKey": partition_key(summary.enqueued_at, None), "RowKey": outcome_row_key(summary.message_id),
        **summary.properties(),
    })  # fmt: skip
    run = cli("history", "--connection-string", queues.connection_string, "--table", audit_table.table_name)
    assert run.code == EXIT_OK
    assert_safe(run)
    assert run.out.endswith(f"  rejected   validation\\u009b31m     http -     {SHOWN}  message m\\u001b[2J  deq 0\n")


def test_stats_by_tenant_escapes_the_tenants_messages_name(cli: Cli, queues: Queues):
    queues.input.send_message(json.dumps({**request("x"), "tenantId": HOSTILE}))
    run = cli("stats", *queues.args, "--by-tenant")
    assert run.code == EXIT_OK
    assert_safe(run)
    assert any(line.startswith(SHOWN.lower()) for line in run.out.splitlines())


def test_validate_and_send_escape_the_problems_they_print(cli: Cli, queues: Queues, tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({**request("x"), "update": {HOSTILE: 1}}) + "\n", encoding="utf-8")
    checked = cli("validate", str(path))
    assert checked.code == EXIT_INVALID
    assert_safe(checked)
    assert f"update.{SHOWN}" in checked.out
    sent = cli("send", str(path), *queues.input_args)
    assert sent.code == EXIT_INVALID
    assert_safe(sent)
    assert f"update.{SHOWN}" in sent.err
