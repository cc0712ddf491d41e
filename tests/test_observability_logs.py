"""No token in the logs: a full run (install, events, REST calls, a refresh) against the sandbox, every
line logged at DEBUG in both log formats, searched for every secret the sandbox issued."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from bitrix_app.logs import KeyValueFormatter
from portals.models import Portal
from portals.services.client import client_for_portal
from sandbox.testing import SandboxServer
from tests.fixtures.portals import app_card_urls, expire_access_token, wait_for
from tests.fixtures.sandbox import RUNTIME_DEFAULTS, SESSION_OPTIONS

pytestmark = pytest.mark.django_db(transaction=True)


class WitnessSandbox(SandboxServer):
    """The sandbox that can list what it issued (tests/deploy/sandbox_witness.py)."""

    module = "tests.deploy.sandbox_witness"


@pytest.fixture(scope="module")
def witness() -> Iterator[SandboxServer]:
    with WitnessSandbox(**SESSION_OPTIONS) as server:
        yield server


@pytest.fixture
def sandbox(witness: SandboxServer) -> SandboxServer:
    """This module's ``sandbox`` (which ``portals_sandbox`` builds on) is the witness."""
    witness.control("config", **RUNTIME_DEFAULTS)
    witness.reset()
    return witness


@pytest.fixture
def every_line() -> Iterator[list[str]]:
    """Every record of every logger at DEBUG, formatted in both modes of the project's formatter."""
    lines: list[str] = []
    formatters = [
        KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"),
        KeyValueFormatter(mode="json"),
    ]

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.extend(formatter.format(record) for formatter in formatters)

    handler = Collect(level=logging.DEBUG)
    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in ("urllib3", "django.db.backends")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


def test_a_full_run_logs_no_token(
    live_server, portals_sandbox, settings, recorder, celery_worker, every_line
):
    # every_line last: starting the worker sets the root logger's level, which the fixture then lowers.
    sandbox = portals_sandbox
    deals = recorder("ONCRMDEALADD", "ONCRMDEALUPDATE")  # handled, so the install binds them
    settings.BITRIX24_APP_URL = live_server.url
    settings.ALLOWED_HOSTS = ["*"]
    sandbox.control("lifecycle", urls=app_card_urls(live_server.url), finish_mode="auto")
    member_id = sandbox.portal(1)["member_id"]

    # Install (the installer frame, ONAPPINSTALL, the event bindings).
    sandbox.control("lifecycle/install", portal=1)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    portal = wait_for(lambda: Portal.objects.filter(member_id=member_id, state="active").first())

    def bound() -> set[str]:
        handlers = sandbox.control_get(f"lifecycle/registrations?portal={member_id}")["handlers"]
        return {h["event"] for h in handlers}

    wait_for(lambda: {"ONCRMDEALADD", "ONCRMDEALUPDATE"} <= bound(), what="deal events bound")
    # Calls, a refresh, and the events the calls cause (delivered to the receiver, dispatched).
    client = client_for_portal(member_id=member_id)
    assert client.call("profile")["ID"]
    expire_access_token(portal)
    deal = client.call("crm.deal.add", {"fields": {"TITLE": "logged"}})
    client.call("crm.deal.update", {"id": deal, "fields": {"TITLE": "logged again"}})
    assert len(list(client.list_all("crm.deal.list", {"select": ["ID"]}))) >= 1
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    from events.models import Event

    wait_for(
        lambda: Event.objects.filter(portal=portal, event="ONCRMDEALUPDATE").exists(), what="deal events"
    )
    wait_for(lambda: not Event.objects.pending().exists(), what="events dispatched")
    assert len(deals.wait_for(2)) >= 2
    # Uninstall, whose event carries the tokens one last time.
    sandbox.control("lifecycle/uninstall", portal=1)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    wait_for(lambda: Portal.objects.filter(member_id=member_id, state="uninstalled").exists())

    secrets = sandbox.control_get("witness/issued")["secrets"]
    grants = sandbox.counters()["token_grants"][member_id]
    assert grants.get("refresh_token", 0) >= 1  # the refresh happened: its new pair is among them
    assert len(secrets) >= 6
    leaked = {secret[:6] + "…" for secret in secrets if any(secret in line for line in every_line)}
    assert leaked == set(), f"{len(leaked)} issued secrets appear in the logs"

    # The search had something to search: the run's lines, with their context, in both formats.
    entries = [json.loads(line) for line in every_line if line.startswith("{")]
    assert len(entries) > 10
    assert any(e.get("member_id") == member_id and e["message"] == "portal.tokens_refreshed" for e in entries)
    assert any(e.get("request_id") and e["logger"] == "events" for e in entries)
    assert any("urllib3" in e["logger"] for e in entries)  # DEBUG lines of the HTTP client were searched
