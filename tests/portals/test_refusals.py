"""The refusal log: one line per cause and address in a window, with what was suppressed."""

from __future__ import annotations

import logging

import pytest

from portals.refusals import RefusalLog

LOGGER = "tests.refusals"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def log(clock: Clock) -> RefusalLog:
    return RefusalLog(logging.getLogger(LOGGER), "test.refused", interval=10.0, clock=clock)


def lines(caplog) -> list[dict]:
    return [
        {"reason": r.reason, "remote": r.remote, "status": r.status, "suppressed": r.suppressed}
        for r in caplog.records
        if r.name == LOGGER and r.getMessage() == "test.refused"
    ]


def test_a_burst_from_one_address_is_logged_once_then_counted(log, clock, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(500):
            log("InvalidApplicationToken", 403, "203.0.113.5")
        clock.now += 9.9
        log("InvalidApplicationToken", 403, "203.0.113.5")
        assert lines(caplog) == [
            {"reason": "InvalidApplicationToken", "remote": "203.0.113.5", "status": 403, "suppressed": 0}
        ]
        # The window is over: the next refusal is logged with the count of those not logged.
        clock.now += 0.1
        log("InvalidApplicationToken", 403, "203.0.113.5")
    assert lines(caplog)[1:] == [
        {"reason": "InvalidApplicationToken", "remote": "203.0.113.5", "status": 403, "suppressed": 500}
    ]


def test_another_cause_or_address_is_logged_separately(log, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            log("InvalidApplicationToken", 403, "203.0.113.5")
            log("InvalidEventPayload", 400, "203.0.113.5")
            log("InvalidApplicationToken", 403, "198.51.100.7")
    assert sorted((line["reason"], line["remote"]) for line in lines(caplog)) == [
        ("InvalidApplicationToken", "198.51.100.7"),
        ("InvalidApplicationToken", "203.0.113.5"),
        ("InvalidEventPayload", "203.0.113.5"),
    ]


def test_context_goes_into_the_line_and_memory_stays_bounded(clock, caplog) -> None:
    log = RefusalLog(logging.getLogger(LOGGER), "test.refused", max_keys=100, clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        log("UnknownPortal", 403, "192.0.2.1", context={"detail": "no such portal"})
        for i in range(1000):  # a flood from many addresses
            log("UnknownPortal", 403, f"10.0.{i // 256}.{i % 256}")
    assert caplog.records[0].detail == "no such portal"
    assert len(log._seen) <= 100
