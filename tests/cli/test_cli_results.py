"""`certstate results` against Azurite: the whole result queue, every filter, --follow, --remove, the table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from producer.cli import tables
from producer.cli.exits import EXIT_INTERRUPTED, EXIT_OK
from shared.contract.errors import ErrorCode
from shared.contract.outcomes import Status
from tests.cli.harness import Queues, Run
from tests.cli.samples import outcome_json

Cli = Callable[..., Run]
MANY = 120  # more than the 32 one peek (or one receive) returns
TENANT = "6c1d3e5f-0a1b-4c2d-8e9f-0123456789ab"


def many(queues: Queues, count: int = MANY, prefix: str = "many") -> None:
    queues.put_outcomes(
        *(outcome_json(Status.SUCCEEDED, f"{prefix}-{i:03d}", f"m-{prefix}-{i:03d}") for i in range(count))
    )


def correlation_ids(run: Run) -> list[str]:
    return [json.loads(line)["correlationId"] for line in run.out.splitlines()]


def test_results_shows_every_outcome_of_a_long_queue_and_says_how_many_it_scanned(cli: Cli, queues: Queues):
    many(queues)
    run = cli("results", *queues.result_args, "--json")
    assert run.code == EXIT_OK
    assert sorted(correlation_ids(run)) == [f"many-{i:03d}" for i in range(MANY)]
    assert run.err == f"{MANY} outcomes shown of {MANY} messages scanned on '{queues.result.queue_name}'\n"
    assert len(queues.contents(queues.result)) == MANY  # all of them visible again at once


@pytest.mark.parametrize("position", [0, 39, MANY - 1])
def test_a_correlation_id_is_found_wherever_it_is_on_the_queue(cli: Cli, queues: Queues, position: int):
    many(queues)
    run = cli("results", *queues.result_args, "--correlation-id", f"many-{position:03d}", "--json")
    assert correlation_ids(run) == [f"many-{position:03d}"]
    assert run.err.endswith(f"1 outcome shown of {MANY} messages scanned on '{queues.result.queue_name}'\n")


def test_no_match_says_so_with_the_number_scanned(cli: Cli, queues: Queues):
    many(queues, 40)
    run = cli("results", *queues.result_args, "--correlation-id", "nobody")
    assert (run.code, run.out) == (EXIT_OK, "")
    assert run.err == f"no matching outcomes on '{queues.result.queue_name}' (40 messages scanned)\n"


def test_every_filter_finds_its_match_behind_a_long_queue(cli: Cli, queues: Queues):
    now = datetime.now(UTC)
    many(queues, 60)
    queues.put_outcomes(
        outcome_json(Status.FAILED, "late-fail", "m-f", error_code=ErrorCode.GRAPH_FORBIDDEN, completed_at=now),
        outcome_json(Status.REJECTED, "late-tenant", "m-t", error_code=ErrorCode.VALIDATION_FAILED, tenant_id=TENANT),
        outcome_json(Status.SUCCEEDED, "late-recent", "m-r", completed_at=now - timedelta(minutes=5)),
    )
    cases: list[tuple[list[str], list[str]]] = [
        (["--status", "failed"], ["late-fail"]),
        (["--error-code", "validationFailed"], ["late-tenant"]),
        (["--tenant", TENANT.upper()], ["late-tenant"]),
        (["--since", "1h"], ["late-fail", "late-recent"]),
        (["--since", "1h", "--until", "2m"], ["late-recent"]),
        (["--until", "2026-11-27T14:00:00Z"], []),
        (["--status", "succeeded", "--since", (now - timedelta(minutes=10)).isoformat()], ["late-recent"]),
    ]
    for options, expected in cases:
        run = cli("results", *queues.result_args, *options, "--json")
        assert run.code == EXIT_OK, (options, run.err)
        assert sorted(correlation_ids(run)) == expected, options


def test_max_stops_early(cli: Cli, queues: Queues):
    many(queues, 50)
    run = cli("results", *queues.result_args, "--max", "5", "--json")
    assert len(run.out.splitlines()) == 5
    assert len(queues.contents(queues.result)) == 50


def test_results_table_lines_up_and_shows_warnings(cli: Cli, queues: Queues):
    queues.put_outcomes(
        outcome_json(
            Status.SUCCEEDED,
            "order-1",
            "00000000-0000-4000-8000-000000000001",
            warnings=("serverUrl is a legacy property (sent as given)",),
        ),
        outcome_json(
            Status.FAILED, "order-2", "00000000-0000-4000-8000-000000000002", error_code=ErrorCode.GRAPH_THROTTLED
        ),
    )
    run = cli("results", *queues.result_args)
    assert run.code == EXIT_OK
    header, first, warning, second = run.out.splitlines()
    columns = tables.OUTCOME_COLUMNS
    starts = [sum(width + 2 for _, width in columns[:n]) for n in range(len(columns))]
    for (name, _), start, value in zip(columns, starts, first.split(), strict=True):
        assert header[start:].startswith(name)  # fixed width: every row lines up under its header
        assert first[start:].startswith(value)
    assert first.split() == [
        "succeeded", "home", "order-1", "00000000-0000-4000-8000-000000000001", "1", "200", "-",
        "2026-11-27T14:03:11.402Z",
    ]  # fmt: skip
    assert warning == "  warning: serverUrl is a legacy property (sent as given)"
    assert second.split()[:7] == [
        "failed",
        "home",
        "order-2",
        "00000000-0000-4000-8000-000000000002",
        "5",
        "429",
        "graphThrottled",
    ]
    assert "{" not in run.out  # no Python reprs of the outcome's parts
    assert "[" not in run.out


def test_messages_that_are_not_outcomes_are_named_once(cli: Cli, queues: Queues):
    queues.put_outcomes("not an outcome", outcome_json(Status.SUCCEEDED, "ok", "m-1"))
    run = cli("results", *queues.result_args, "--json")
    assert correlation_ids(run) == ["ok"]
    assert run.err.count("not an outcome (not a JSON object)") == 1


def test_remove_deletes_exactly_what_it_printed_across_pages(cli: Cli, queues: Queues):
    many(queues, 70)
    queues.put_outcomes(*(outcome_json(Status.FAILED, f"bad-{i}", f"m-bad-{i}") for i in range(3)))
    run = cli("results", *queues.result_args, "--remove", "--status", "failed", "--json")
    assert sorted(correlation_ids(run)) == ["bad-0", "bad-1", "bad-2"]
    assert run.err.endswith(f"3 outcomes removed of 73 messages scanned on '{queues.result.queue_name}'\n")
    left = [json.loads(c)["correlationId"] for c in queues.contents(queues.result)]
    assert sorted(left) == [f"many-{i:03d}" for i in range(70)]


def test_remove_without_the_right_to_update_says_when_messages_come_back(
    cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch
):
    from azure.core.exceptions import HttpResponseError
    from azure.storage.queue import QueueClient

    def refuse(self: QueueClient, *args: Any, **kwargs: Any) -> None:
        err = HttpResponseError("This request is not authorized to perform this operation using this permission.")
        err.status_code = 403
        err.error_code = "AuthorizationPermissionMismatch"  # type: ignore[attr-defined]  # the storage SDK adds it
        raise err

    queues.put_outcomes(outcome_json(Status.SUCCEEDED, "ok", "m-1"), outcome_json(Status.REJECTED, "no", "m-2"))
    monkeypatch.setattr(QueueClient, "update_message", refuse)
    run = cli("results", *queues.result_args, "--remove", "--status", "succeeded")
    assert run.code == EXIT_OK
    assert run.err.splitlines()[0] == (
        "note: could not make 1 message visible again at once (403 AuthorizationPermissionMismatch); "
        "they reappear within 30 s"
    )
    assert queues.contents(queues.result) == []  # the rejected one is still hidden; the succeeded one is gone


def test_an_identity_that_may_only_peek_gets_the_first_32_and_is_told(
    cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch
):
    from azure.core.exceptions import HttpResponseError
    from azure.storage.queue import QueueClient

    def refuse(self: QueueClient, *args: Any, **kwargs: Any) -> Any:
        err = HttpResponseError("This request is not authorized to perform this operation using this permission.")
        err.status_code = 403
        raise err

    many(queues, 40)
    monkeypatch.setattr(QueueClient, "receive_messages", refuse)
    run = cli("results", *queues.result_args, "--json")
    assert run.code == EXIT_OK
    assert len(run.out.splitlines()) == 32
    assert "may only peek" in run.err
    assert "32 outcomes shown of 32 messages scanned" in run.err


def test_follow_shows_every_outcome_that_arrives_even_behind_a_long_queue(
    cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch
):
    many(queues, 40)
    polls: list[float] = []
    late = [["late-0", "late-1", "late-2"], ["late-3"]]

    def fake_sleep(seconds: float) -> None:  # between reads: outcomes arrive, then Ctrl-C
        polls.append(seconds)
        if not late:
            raise KeyboardInterrupt
        queues.put_outcomes(*(outcome_json(Status.SUCCEEDED, c, f"m-{c}") for c in late.pop(0)))

    monkeypatch.setattr(time, "sleep", fake_sleep)  # the CLI waits between reads with time.sleep
    run = cli("results", *queues.result_args, "--follow", "--interval", "0.5")
    assert run.code == EXIT_INTERRUPTED
    lines = run.out.splitlines()
    assert lines[0].startswith("STATUS")
    correlation = [name for name, _ in tables.OUTCOME_COLUMNS].index("CORRELATION ID")
    shown = [line.split()[correlation] for line in lines[1:]]
    assert sorted(shown) == sorted([f"many-{i:03d}" for i in range(40)] + [f"late-{i}" for i in range(4)])
    assert shown[-4:] == ["late-0", "late-1", "late-2", "late-3"]
    assert polls == [0.5, 0.5, 0.5]
    assert (
        run.err == f"44 outcomes shown of 44 messages scanned on '{queues.result.queue_name}'\ncertstate: interrupted\n"
    )


def test_follow_with_remove_consumes_late_arrivals(cli: Cli, queues: Queues, monkeypatch: pytest.MonkeyPatch):
    many(queues, 35)
    arrivals = [["late-a"], ["late-b"]]

    def fake_sleep(seconds: float) -> None:
        if not arrivals:
            raise KeyboardInterrupt
        queues.put_outcomes(*(outcome_json(Status.SUCCEEDED, c, f"m-{c}") for c in arrivals.pop(0)))

    monkeypatch.setattr(time, "sleep", fake_sleep)
    run = cli("results", *queues.result_args, "--follow", "--remove", "--json")
    assert run.code == EXIT_INTERRUPTED
    assert len(correlation_ids(run)) == 37
    assert queues.contents(queues.result) == []


def test_results_show_each_outcomes_tenant(cli: Cli, queues: Queues):
    queues.put_outcomes(
        outcome_json(Status.SUCCEEDED, "order-1", "00000000-0000-4000-8000-000000000001", tenant_id=TENANT),
        outcome_json(Status.SUCCEEDED, "order-2", "00000000-0000-4000-8000-000000000002"),
    )
    table = cli("results", *queues.result_args).out.splitlines()
    assert sorted(line.split()[1] for line in table[1:]) == sorted([TENANT[:12] + "…", "home"])
