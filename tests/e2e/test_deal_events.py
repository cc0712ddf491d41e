"""A person edits deals on the portal page; the portal delivers the CRM events to the app, which
stores them (and its worker processes them)."""

from __future__ import annotations

import json
import re

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from events.models import Event
from tests.fixtures.e2e import WAIT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def submit_and_read_flash(browser, form_action: str, **fields: str) -> str:
    """Fill and submit the portal page's form posting to ``form_action``; returns the page's message."""
    form = browser.find_element(By.CSS_SELECTOR, f"form[action$='{form_action}']")
    for name, value in fields.items():
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    page = browser.find_element(By.TAG_NAME, "html")
    form.find_element(By.TAG_NAME, "button").click()
    # The page before the submit may show a flash of its own: wait until it is gone (the POST's
    # answer replaced the document), then read the new page's.
    WebDriverWait(browser, WAIT).until(ec.staleness_of(page))
    flash = WebDriverWait(browser, WAIT).until(ec.visibility_of_element_located((By.CLASS_NAME, "flash")))
    return str(flash.text)


def test_deals_edited_on_the_portal_page_reach_the_app(browser, e2e_app, installed_portal):
    browser.get(e2e_app.portal_page())
    added = submit_and_read_flash(browser, "/portal/actions/deal-add", title="Deal added in the browser")
    match = re.fullmatch(r"ONCRMDEALADD for deal (\d+)\.", added)
    assert match, added
    new_deal = match.group(1)
    updated = submit_and_read_flash(browser, "/portal/actions/deal-update", id=new_deal)
    assert updated == f"ONCRMDEALUPDATE for deal {new_deal}."

    # The portal delivered both to the app's event URL, which accepted them.
    e2e_app.deliveries_settled()
    for name in ("ONCRMDEALADD", "ONCRMDEALUPDATE"):
        (delivery,) = e2e_app.deliveries(name)
        assert delivery["url"] == f"{e2e_app.url}/bitrix/events/"
        assert delivery["ok"] and delivery["status"] == 200, delivery

    # The app stored them for its portal, for that deal, and its worker processed them.
    def stored() -> list[Event]:
        rows = list(Event.objects.filter(portal=installed_portal).order_by("id"))
        return rows if len(rows) == 2 and all(r.status == Event.Status.DONE for r in rows) else []

    rows = wait_for(stored, what="both deal events stored and processed")
    assert [r.event for r in rows] == ["ONCRMDEALADD", "ONCRMDEALUPDATE"]
    assert {r.object_key for r in rows} == {f"ONCRMDEAL:{new_deal}"}
    assert all(r.payload["data"]["FIELDS"]["ID"] == new_deal for r in rows)
    assert all("access_token" not in json.dumps(r.payload) for r in rows)  # stored without tokens

    # The person sees the deliveries on the portal page too. The table refreshes itself, so a row
    # read mid-refresh is stale: poll again rather than fail.
    browser.get(e2e_app.portal_page())
    WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda b: (
            {"ONCRMDEALADD", "ONCRMDEALUPDATE"}
            <= {row.text.split()[1] for row in b.find_elements(By.CSS_SELECTOR, "#deliveries tr")[1:]}
        )
    )
