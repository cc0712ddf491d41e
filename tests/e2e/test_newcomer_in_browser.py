"""What a person tries first, in a real browser against the sandbox's http portal pages:

* installing from the portal page finishes only once the app's events are bound, so a deal added
  the moment the portal says "installed" reaches the app;
* the operators' admin "Re-authorise" link works in the browser (the sandbox's https page, whose CA
  Chromium refuses, is never shown: BITRIX24_ALLOW_HTTP sends the browser over http);
* a widget bound on the portal (the deal tab bin/demo binds) opens the app's placement page.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from events.models import Event
from events.services.binding import app_events_desired, events_handler_url
from portals.models import Portal
from portals.services.client import client_for_portal
from tests.fixtures.e2e import WAIT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_install_finishes_after_binding_so_an_early_deal_reaches_the_app(browser, e2e_app):
    sandbox, member_id = e2e_app.sandbox, e2e_app.member_id()
    sandbox.control("lifecycle/uninstall", portal=1, clean=True)
    # Slow REST on the portal: the app's binding (user.admin, event.get, event.bind × 5) takes seconds.
    sandbox.control("faults", member_id=member_id, kind="latency", delay=0.6, count=40)
    browser.get(e2e_app.portal_page())
    browser.find_element(By.XPATH, "//button[normalize-space()='Install the app']").click()

    # Until installFinish the portal shows the installer; the moment it says "installed", every
    # event the app wants is bound already.
    seen_installing = False
    wanted: set[tuple[str, str]] = set()

    def installed() -> dict | None:
        nonlocal seen_installing, wanted
        registrations = e2e_app.registrations()
        if registrations["state"] == "installing":
            seen_installing = True
            portal = Portal.objects.filter(member_id=member_id).first()
            if portal is not None:
                wanted = {(b.event, b.handler) for b in app_events_desired(portal=portal)}
        return registrations if registrations["state"] == "installed" else None

    registrations = wait_for(installed, timeout=60, what="the portal marks the app installed")
    sandbox.control("lifecycle/crm", portal=1, action="deal-add", title="Added at once")
    assert seen_installing and wanted
    assert wanted <= {(h["event"], h["handler"]) for h in registrations["handlers"]}
    sandbox.control("faults/clear")

    # The deal added right then was delivered to the app and accepted.
    e2e_app.deliveries_settled()
    (delivery,) = e2e_app.deliveries("ONCRMDEALADD")
    assert delivery["url"] == events_handler_url() and delivery["status"] == 200
    wait_for(lambda: Event.objects.filter(event="ONCRMDEALADD", portal__member_id=member_id).exists())
    WebDriverWait(browser, WAIT).until(ec.url_contains("/portal/app/?finished=1"))


def test_the_admins_reauthorise_link_works_in_a_browser(
    browser, e2e_app, installed_portal, django_user_model
):
    Portal.objects.filter(pk=installed_portal.pk).update(
        state=Portal.State.REAUTH_REQUIRED, state_reason="refresh refused: invalid_grant"
    )
    django_user_model.objects.create_superuser("operator", password="operator-password")  # noqa: S106
    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{e2e_app.url}/admin/login/?next=/admin/portals/portal/{installed_portal.pk}/change/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("operator-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    # The console makes a link for the portal's administrator; opened, it starts the code flow.
    wait.until(ec.element_to_be_clickable((By.ID, "act-reauth-link"))).click()
    link = wait.until(ec.visibility_of_element_located((By.ID, "reauth-link"))).get_attribute("href")
    browser.get(link)
    # The portal's consent page, over http on the portal's own address.
    allow = wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Allow']")))
    assert browser.current_url.startswith(f"http://{e2e_app.domain().split(':')[0]}:")
    allow.click()
    heading = wait.until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == f"{installed_portal.domain} is authorised again"
    portal = Portal.objects.get(pk=installed_portal.pk)
    assert portal.state == Portal.State.ACTIVE and portal.state_reason == ""
    assert client_for_portal(member_id=portal.member_id).call("profile")["ID"]


def test_a_deal_tab_widget_opens_the_apps_placement_page(browser, e2e_app, installed_portal):
    client_for_portal(member_id=installed_portal.member_id).call(
        "placement.bind",
        {
            "PLACEMENT": "CRM_DEAL_DETAIL_TAB",
            "HANDLER": f"{e2e_app.url}/bitrix/placement/crm_deal_detail_tab/",
            "TITLE": "Demo app",
        },
        read=False,
    )
    browser.get(e2e_app.portal_page())
    browser.find_element(By.LINK_TEXT, "Demo app").click()
    WebDriverWait(browser, WAIT).until(ec.frame_to_be_available_and_switch_to_it((By.ID, "app-frame")))
    body = WebDriverWait(browser, WAIT).until(ec.visibility_of_element_located((By.TAG_NAME, "body")))
    # Our placement page, showing the deal the tab was opened on (fetched with the user's token).
    assert body.text.startswith("crm_deal_detail_tab")
    assert "Deal 1\nTitle\nDeal #1" in body.text
    browser.switch_to.default_content()
