"""Every date the sandbox returns, on every entity and after every kind of change, has the form of
DATE_CREATE: ISO 8601 with the portal's offset (2024-05-01T10:20:30+03:00), never a Unix time."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.sandbox.helpers import app_call, hook_call, issue

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2})$")
# Fields holding a date or a moment, by name (TIME_ZONE / TIME_ZONE_OFFSET hold neither).
DATE_NAME = re.compile(r"DATE|TIME|LAST_LOGIN|BIRTHDAY")
CRM = ("deal", "lead", "contact", "company")


def result(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["result"]


def offset(value: str) -> str:
    match = ISO.match(value)
    assert match, f"not ISO 8601 with an offset: {value!r}"
    return match.group(1)


def assert_dates(row: dict[str, Any], where: str) -> int:
    """Every non-empty date field of ``row`` has DATE_CREATE's form and offset; returns how many."""
    reference = offset(str(row.get("DATE_CREATE") or row.get("DATE_REGISTER") or "2024-01-01T00:00:00+03:00"))
    checked = 0
    for name, value in row.items():
        if not DATE_NAME.search(name) or "ZONE" in name or value in (None, ""):
            continue
        assert isinstance(value, str), f"{where}: {name} = {value!r}"
        assert offset(value) == reference, f"{where}: {name} = {value!r}"
        checked += 1
    return checked


@pytest.mark.parametrize("entity", CRM)
def test_generated_added_and_updated_rows(sandbox, entity):
    rows = result(hook_call(sandbox, f"crm.{entity}.list", select=["*"]))
    assert sum(assert_dates(row, f"{entity} list") for row in rows) >= len(rows) * 2
    added = result(hook_call(sandbox, f"crm.{entity}.add", fields={"TITLE": "dated", "NAME": "Dated"}))
    assert assert_dates(result(hook_call(sandbox, f"crm.{entity}.get", id=added)), f"{entity} added") >= 2
    assert result(hook_call(sandbox, f"crm.{entity}.update", id=1, fields={"COMMENTS": "changed"}))
    updated = result(hook_call(sandbox, f"crm.{entity}.get", id=1))
    assert assert_dates(updated, f"{entity} updated") >= 2


def test_the_portal_pages_deal_buttons(sandbox):
    """ "Add a deal" and "Touch deal" on the portal page (the control API's crm action is the same)."""
    host = sandbox.portal(1)["http_endpoint"].split("/")[2]
    touched = requests.post(f"http://{host}/portal/actions/deal-update", data={"id": "3"}, timeout=10)
    assert touched.status_code == 200 and "ONCRMDEALUPDATE for deal 3" in touched.text
    row = result(hook_call(sandbox, "crm.deal.get", id=3))
    assert assert_dates(row, "touched deal") >= 2
    assert row["DATE_MODIFY"] >= row["DATE_CREATE"]

    message = sandbox.control("lifecycle/crm", portal=1, action="deal-add", title="From the page")["message"]
    new_id = int(message.split("deal ")[1].rstrip("."))
    row = result(hook_call(sandbox, "crm.deal.get", id=new_id))
    assert assert_dates(row, "deal added on the page") >= 2
    assert row["DATE_CREATE"] == row["DATE_MODIFY"]
    assert row["DATE_CREATE"] > result(hook_call(sandbox, "crm.deal.get", id=1))["DATE_CREATE"]


def test_users_currencies_and_the_offline_queue(sandbox):
    for user in result(hook_call(sandbox, "user.get")):
        assert assert_dates(user, "user") >= 2
    assert result(hook_call(sandbox, "crm.currency.update", id="EUR", fields={"AMOUNT": "1.1"}))
    for currency in result(hook_call(sandbox, "crm.currency.list")):
        assert assert_dates(currency, "currency") == 1

    token = issue(sandbox)["access_token"]
    bound = app_call(sandbox, "event.bind", token, event="ONCRMDEALUPDATE", event_type="offline")
    assert result(bound) is True
    assert result(hook_call(sandbox, "crm.deal.update", id=2, fields={"TITLE": "queued"}))
    (record,) = result(app_call(sandbox, "event.offline.list", token))
    assert assert_dates({"DATE_CREATE": "2024-01-01T00:00:00+03:00", **record}, "offline record") == 2
