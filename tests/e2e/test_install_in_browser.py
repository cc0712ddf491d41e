"""A person installs (and uninstalls) the app from the sandbox portal page, in a real browser."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from events.models import Event
from portals.models import Portal
from portals.services.client import client_for_portal
from portals.services.lifecycle import portals_data_purge
from tests.fixtures.e2e import SCREENSHOTS, WAIT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_person_installs_the_app_from_the_portal_page(browser, e2e_app):
    member_id = e2e_app.member_id()
    # The sandbox seeds portals with the app on them: take it off first, as a person would find it.
    e2e_app.sandbox.control("lifecycle/uninstall", portal=1, clean=True)
    assert e2e_app.registrations()["state"] == "uninstalled"
    assert not Portal.objects.filter(member_id=member_id).exists()
    wait = WebDriverWait(browser, WAIT)

    browser.get(e2e_app.portal_page())
    browser.find_element(By.XPATH, "//button[normalize-space()='Install the app']").click()

    # The portal frames the installer; our installer page calls BX24.installFinish() through the
    # shim, the portal page answers it and reloads itself with the app page (?finished=1).
    wait.until(ec.url_contains("/portal/app/?finished=1"))
    wait.until(ec.frame_to_be_available_and_switch_to_it((By.ID, "app-frame")))
    heading = wait.until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == e2e_app.domain()
    # The app page says what the app does for this portal: working, on its plan.
    assert browser.find_element(By.ID, "app-state").text == "working"
    browser.switch_to.default_content()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "install.png"))

    # The portal marks the app installed, and says so on its page.
    assert e2e_app.registrations()["state"] == "installed"
    browser.get(e2e_app.portal_page())
    state = browser.find_element(By.XPATH, "//p[starts-with(normalize-space(), 'State:')]/strong")
    assert state.text == "installed"

    # ONAPPINSTALL went to the app's installation-event URL and was accepted.
    e2e_app.deliveries_settled()
    (install_event,) = e2e_app.deliveries("ONAPPINSTALL")
    assert install_event["kind"] == "install"
    assert install_event["url"] == f"{e2e_app.url}/bitrix/install/"
    assert install_event["ok"] and install_event["status"] == 200

    # The app holds the portal, active, with tokens that work: app.info through our own client.
    portal = wait_for(lambda: Portal.objects.filter(member_id=member_id).first(), what="Portal row")
    assert portal.state == Portal.State.ACTIVE
    assert portal.access_token and portal.refresh_token and portal.application_token
    assert portal.domain == e2e_app.domain()
    info = client_for_portal(member_id=member_id).call("app.info")
    assert info["INSTALLED"] is True


def test_a_person_uninstalls_the_app_with_its_data(browser, e2e_app, installed_portal):
    e2e_app.sandbox.control("lifecycle/crm", portal=1, action="deal-update", id=1)
    wait_for(lambda: Event.objects.filter(portal=installed_portal, event="ONCRMDEALUPDATE").exists())

    browser.get(e2e_app.portal_page())
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/portal/actions/uninstall']")
    form.find_element(By.NAME, "clean").click()  # "delete app settings and data (CLEAN)"
    form.find_element(By.TAG_NAME, "button").click()
    flash = WebDriverWait(browser, WAIT).until(ec.visibility_of_element_located((By.CLASS_NAME, "flash")))
    assert flash.text == "Uninstalled; ONAPPUNINSTALL queued for 1 handler(s)."
    # The portal page offers the install again and no longer opens the app.
    assert browser.find_elements(By.XPATH, "//button[normalize-space()='Install the app']")
    assert not browser.find_elements(By.XPATH, "//button[normalize-space()='Open the app']")

    e2e_app.deliveries_settled()
    (uninstall,) = e2e_app.deliveries("ONAPPUNINSTALL")
    assert uninstall["url"] == f"{e2e_app.url}/bitrix/events/" and uninstall["status"] == 200
    portal = wait_for(
        lambda: Portal.objects.filter(pk=installed_portal.pk, state=Portal.State.UNINSTALLED).first(),
        what="the portal marked uninstalled",
    )
    assert portal.access_token == portal.refresh_token == portal.application_token == ""
    assert "with its data" in portal.state_reason
    # The data goes after the grace period (a reinstall until then keeps it), by the hourly purge.
    assert Event.objects.filter(portal=portal, event="ONCRMDEALUPDATE").exists()
    assert portals_data_purge(now=portal.data_delete_after) == [portal.member_id]
    assert not Event.objects.filter(portal=portal, event="ONCRMDEALUPDATE").exists()
