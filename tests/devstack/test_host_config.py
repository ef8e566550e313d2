"""host.json's queue options as the host reads them (the runner's), and the three the app reads the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.host_config import HOST_JSON, HostConfigError, HostQueueOptions, host_queue_options, parse_timespan
from shared import host_config as app


def host(**queues: object) -> dict[str, object]:
    return {"version": "2.0", "extensions": {"queues": queues}}


# -- TimeSpan --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:30", 30.0),
        ("00:01:00", 60.0),
        ("00:00:00.5", 0.5),
        ("00:00:00.1234567", 0.1234567),
        ("1.02:00:00", 93600.0),
        ("00:10", 600.0),
        (" 00:00:02 ", 2.0),
    ],
)
def test_parse_timespan(text: str, seconds: float) -> None:
    assert parse_timespan(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["30", "00:00:60", "00:60:00", "24:00:00", "00:00:00.12345678", "abc", "-00:00:01", ""]
)
def test_parse_timespan_rejects(text: str) -> None:
    with pytest.raises(HostConfigError):
        parse_timespan(text)


# -- reading host.json -----------------------------------------------------------------------------------------


def test_repo_host_json_is_what_the_app_reads() -> None:
    repo = HostQueueOptions.from_host_json(HOST_JSON)
    assert repo == HostQueueOptions(8, 4, 2.0, 30.0, 5, "none")
    assert repo.max_concurrency == 12
    assert host_queue_options() == repo


def test_defaults_follow_the_host() -> None:
    assert HostQueueOptions.from_host_json(None, processor_count=2) == HostQueueOptions(16, 16, 60.0, 0.0, 5, "base64")
    assert host_queue_options({}, processor_count=1) == HostQueueOptions(16, 8, 60.0, 0.0, 5, "base64")
    assert host_queue_options({"extensions": {"http": {}}}, processor_count=1).max_concurrency == 24


def test_default_new_batch_threshold_uses_the_configured_batch_size_and_processors() -> None:
    options = host_queue_options(host(batchSize=5), processor_count=3)
    assert options.new_batch_threshold == 5 // 2 * 3
    assert options.max_concurrency == 5 + 6
    assert host_queue_options(host(batchSize=5, newBatchThreshold=0), processor_count=3).max_concurrency == 5


def test_keys_are_case_insensitive_like_the_host() -> None:
    odd = host_queue_options(
        {"Extensions": {"Queues": {"BatchSize": 5, "MessageEncoding": "None", "MAXDEQUEUECOUNT": 2}}},
        processor_count=3,
    )
    assert (odd.batch_size, odd.new_batch_threshold, odd.message_encoding, odd.max_dequeue_count) == (5, 6, "none", 2)


def test_keys_differing_only_in_case_are_refused() -> None:
    with pytest.raises(HostConfigError, match="more than once"):
        host_queue_options(host(batchSize=4, BatchSize=8))


def test_integers_may_be_strings_as_in_the_host_configuration() -> None:
    assert host_queue_options(host(batchSize="4", maxDequeueCount=" 3 ")).batch_size == 4


def test_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps(host(maxDequeueCount=2, visibilityTimeout="00:00:05")), encoding="utf-8")
    options = host_queue_options(path)
    assert (options.max_dequeue_count, options.visibility_timeout) == (2, 5.0)


def test_unreadable_host_json_is_a_host_config_error(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(HostConfigError, match="not valid JSON"):
        host_queue_options(path)
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(HostConfigError, match="JSON object"):
        host_queue_options(path)


@pytest.mark.parametrize(
    "document",
    [
        host(batchSize=0),
        host(batchSize=33),
        host(batchSize=True),
        host(batchSize=8.5),
        host(batchSize="eight"),
        host(maxDequeueCount=0),
        host(messageEncoding="utf8"),
        host(messageEncoding=1),
        host(maxPollingInterval="00:00:00.05"),
        host(maxPollingInterval="00:00:60"),
        host(visibilityTimeout=5),
        host(newBatchThreshold=-1),
        {"extensions": {"queues": []}},
        {"extensions": "queues"},
    ],
)
def test_what_the_host_refuses_is_refused(document: dict[str, object]) -> None:
    with pytest.raises(HostConfigError):
        host_queue_options(document)


def test_constructed_options_are_validated_too() -> None:
    with pytest.raises(HostConfigError, match="visibilityTimeout"):
        HostQueueOptions(visibility_timeout=-1.0)
    assert issubclass(HostConfigError, ValueError)  # callers that catch ValueError keep working


# -- the app's reading agrees with the host's ------------------------------------------------------------------

PREFIX = "AzureFunctionsJobHost__extensions__queues__"


@pytest.mark.parametrize(
    ("document", "settings"),
    [
        (HOST_JSON, {}),
        (HOST_JSON, {f"{PREFIX}batchSize": "16", f"{PREFIX}newBatchThreshold": "8"}),
        (HOST_JSON, {f"{PREFIX.lower()}MAXDEQUEUECOUNT": "3", f"{PREFIX}messageEncoding": "base64"}),
        (None, {}),
        ({"Extensions": {"Queues": {"BatchSize": "4", "messageEncoding": "None"}}}, {}),
    ],
)
def test_the_app_reads_the_values_it_needs_as_the_host_does(document, settings) -> None:
    """The shipped reader (shared/host_config.py) and the runner's (the host's rules) give the same answers."""
    full = host_queue_options(document, processor_count=2, app_settings=settings)
    mine = app.queue_options(document, processor_count=2, app_settings=settings)
    assert mine == app.QueueOptions(
        full.max_dequeue_count, full.max_concurrency, full.message_encoding, full.new_batch_threshold
    )


def test_the_app_reads_the_shipped_host_json_with_overrides_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(f"{PREFIX}maxDequeueCount", "7")
    assert app.queue_options() == app.QueueOptions(
        max_dequeue_count=7, max_concurrency=12, message_encoding="none", new_batch_threshold=4
    )
