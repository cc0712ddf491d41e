"""Log lines keep their extra= fields (never a secret's value); routine work is logged at DEBUG.

Through the LOGGING of bitrix_app/settings.py, as every process configures it."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator

import pytest
from django.conf import settings

from bitrix_app.logs import HIDDEN, KeyValueFormatter, RoutineAtDebug


@pytest.fixture
def configured(monkeypatch) -> Iterator[io.StringIO]:
    """The project's LOGGING applied, its handlers writing into one buffer; restored afterwards."""
    stream = io.StringIO()
    config = {
        **settings.LOGGING,
        "handlers": {
            name: {**handler, "stream": stream} for name, handler in settings.LOGGING["handlers"].items()
        },
    }
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig(settings.LOGGING)


def test_extras_are_printed_as_key_value(configured):
    logging.getLogger("portals.services.tokens").warning(
        "portal.refresh_unanswered", extra={"member_id": "a1b2", "reason": "no answer", "attempts": 3}
    )
    line = configured.getvalue().strip()
    expected = 'portal.refresh_unanswered member_id=a1b2 reason="no answer" attempts=3'
    assert line.endswith(f"WARNING portals.services.tokens {expected}")


def test_secret_values_are_never_printed(configured):
    secrets = {
        "access_token": "AT-SECRET",
        "refresh_token": "RT-SECRET",
        "application_token": "APP-SECRET",
        "client_secret": "CS-SECRET",
        "auth": {"access_token": "NESTED-SECRET", "member_id": "m1"},
        "payload": {"data": {"FIELDS": {"ID": "7"}}, "auth": {"application_token": "DEEP-SECRET"}},
        "password": "PW-SECRET",
    }
    logging.getLogger("events").info("events.received", extra={"member_id": "m1", **secrets})
    line = configured.getvalue()
    assert "SECRET" not in line
    assert f"access_token={HIDDEN}" in line and f"auth={HIDDEN}" in line
    assert f'"auth": "{HIDDEN}"' in line and '"ID": "7"' in line  # nested: only the secret goes


def test_an_exception_keeps_its_traceback_after_the_fields(configured):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("portals").exception("portal.failed", extra={"member_id": "m1"})
    lines = configured.getvalue().splitlines()
    assert lines[0].endswith("portal.failed member_id=m1") and lines[-1] == "ValueError: boom"


def test_routine_work_is_debug(configured):
    sweep = sorted({entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()})
    assert "events.tasks.events_sweep" in sweep
    trace = logging.getLogger("celery.app.trace")
    context = {"id": "1", "name": "events.tasks.events_sweep", "return_value": None, "runtime": 0.01}
    trace.info(
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s", context, extra={"data": context}
    )
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "events-sweep", "events.tasks.events_sweep"
    )
    access = logging.getLogger("granian.access")
    request = {"addr": "127.0.0.1", "method": "GET", "path": "/static/admin/css/base.css", "status": 200}
    access.info("%(method)s %(path)s %(status)d", request)
    # Not routine: a task that isn't periodic, a page, the sweep's failure.
    other = {"id": "2", "name": "portals.tasks.portal_events_bind_task", "return_value": None, "runtime": 0.2}
    trace.info(
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s", other, extra={"data": other}
    )
    access.info("%(method)s %(path)s %(status)d", {**request, "path": "/bitrix/events/"})
    trace.error("Task %(name)s raised", context, extra={"data": context})
    lines = configured.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "portal_events_bind_task" in lines[0] and "data=" not in lines[0]  # Celery's context once
    assert lines[1] == "GET /bitrix/events/ 200"
    assert "ERROR celery.app.trace Task events.tasks.events_sweep raised" in lines[2]


def test_routine_work_shows_with_log_level_debug():
    routine = RoutineAtDebug(level="DEBUG", static_url="static/", tasks=["events.tasks.events_sweep"])
    record = logging.LogRecord(
        "granian.access", logging.INFO, "", 0, "%(path)s", ({"path": "/static/x.js"},), None
    )
    assert routine.filter(record) and record.levelname == "DEBUG"
    quiet = RoutineAtDebug(level="INFO", static_url="static/")
    record = logging.LogRecord(
        "granian.access", logging.INFO, "", 0, "%(path)s", ({"path": "/static/x.js"},), None
    )
    assert not quiet.filter(record)
    line = KeyValueFormatter("%(levelname)s %(message)s").format(
        logging.makeLogRecord(
            {"msg": "m", "levelname": "INFO", "levelno": 20, "token_digest": "x", "note": ""}
        )
    )
    assert line == f'INFO m token_digest={HIDDEN} note=""'
