"""Log lines are one JSON object each, whatever a caller passes (docs/design.md, "Logging")."""

from __future__ import annotations

import json
import logging

import pytest

from shared.logs import log_event, message_context

logger = logging.getLogger("certstate.test")


class Cycle(list[object]):
    pass


@pytest.mark.parametrize(
    "value",
    [10**5000, float("nan"), "lone \ud800 surrogate", {"nested": 10**5000}, {1, 2}],
    ids=["huge-int", "nan", "surrogate", "nested-huge-int", "set"],
)
def test_any_value_gives_one_parseable_line(caplog: pytest.LogCaptureFixture, value: object):
    caplog.set_level(logging.INFO, logger="certstate.test")
    with message_context(messageId="m-1"):
        log_event(logger, logging.INFO, "probe", value=value)
    (record,) = caplog.records
    line = json.loads(record.getMessage())
    assert (line["event"], line["messageId"]) == ("probe", "m-1")
    assert "value" in line
    record.getMessage().encode("utf-8")


def test_a_cycle_still_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="certstate.test")
    cycle = Cycle()
    cycle.append(cycle)
    log_event(logger, logging.INFO, "probe", value=cycle)
    assert json.loads(caplog.records[0].getMessage())["event"] == "probe"
