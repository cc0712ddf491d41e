"""The operator console in a real browser: log in, the dashboard's counts and charts, a filter, an
action that changes a portal (and its record), a view-only user, and the list at 1,400 px.
Screenshots of each step are saved as test artefacts (var/e2e/)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from console.roles import OPERATORS, VIEWERS, roles_ensure
from console.rollups import rollups
from portals.bitrix.metrics import Metrics, event_dispatched
from portals.models import Portal
from tests.fixtures.e2e import SCREENSHOTS, WAIT

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-browser-console-1"


def staff(role: str) -> User:
    roles_ensure()
    user = User.objects.create_user(role, f"{role}@example.test", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS if role == "operator" else VIEWERS))
    return user


def log_in(browser: Any, base: str, username: str) -> None:
    browser.get(f"{base}/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "dashboard")))


def shot(browser: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"console-{name}.png"))


def test_dashboard_filter_and_an_operators_action(browser, e2e_app, installed_portal):
    other = Portal.objects.create(
        member_id="e" * 32,
        domain="stuck.example.test",
        client_endpoint="https://stuck.example.test/rest/",
        server_endpoint="https://oauth.example.test/rest/",
        state=Portal.State.REAUTH_REQUIRED,
        state_reason="invalid_grant",
    )
    for _ in range(4):
        event_dispatched("done", lag=0.5, portal=installed_portal.member_id)
    long_method = "crm.item.productrow.getavailablefortypeandentity"
    Metrics().error(
        installed_portal.member_id, "ERROR_CORE_VERY_LONG_CODE_NAME", method=long_method, status=400
    )
    rollups.flush()
    staff("operator")
    browser.set_window_size(1400, 1000)
    log_in(browser, e2e_app.url, "operator")

    states = browser.find_element(By.ID, "portal-states")
    assert states.find_element(By.CSS_SELECTOR, "[data-state=active]").text == "1"
    assert states.find_element(By.CSS_SELECTOR, "[data-state=reauth_required]").text == "1"
    dispatched = browser.find_element(By.CSS_SELECTOR, "#charts polyline[data-label=dispatched]")
    assert dispatched.get_attribute("data-total") == "4"
    assert dispatched.size["width"] > 100  # drawn, not just present
    shot(browser, "dashboard")

    browser.find_element(By.CSS_SELECTOR, "#needs-action a[href$='attention=reauth']").click()
    rows = WebDriverWait(browser, WAIT).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    )
    assert len(rows) == 1 and other.domain in rows[0].text
    assert "badge-reauth_required" in rows[0].get_attribute("innerHTML")
    # The list fits 1,400 px: neither the page nor the table scrolls sideways.
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    table = browser.find_element(By.CSS_SELECTOR, "#changelist .results")
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", table)
    shot(browser, "filtered-list")
    browser.get(f"{e2e_app.url}/admin/portals/portal/")
    table = browser.find_element(By.CSS_SELECTOR, "#changelist .results")
    assert "ERROR_CORE_VERY_LONG_CODE_NAME" in table.text
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", table)
    shot(browser, "list")

    browser.get(f"{e2e_app.url}/admin/portals/portal/{installed_portal.pk}/change/")
    before = Portal.objects.get(pk=installed_portal.pk).access_token
    browser.find_element(By.ID, "act-refresh").click()
    WebDriverWait(browser, WAIT).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist .success"))
    )
    assert Portal.objects.get(pk=installed_portal.pk).access_token != before
    records = browser.find_element(By.ID, "operator-records").text
    assert "operator" in records and "refresh: refreshed" in records
    shot(browser, "portal-after-action")


def test_a_view_only_user_cannot_act(browser, e2e_app, installed_portal):
    staff("viewer")
    log_in(browser, e2e_app.url, "viewer")
    browser.get(f"{e2e_app.url}/admin/portals/portal/{installed_portal.pk}/change/")
    assert browser.find_element(By.ID, "view-only").is_displayed()
    assert browser.find_elements(By.ID, "act-refresh") == []
    # Even a hand-made POST (with the page's CSRF token) is refused.
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
        fetch(arguments[0], {method: "POST", headers: {"X-CSRFToken": token}, credentials: "same-origin"})
          .then(r => done(r.status));
        """,
        f"{e2e_app.url}/admin/portals/portal/{installed_portal.pk}/act/refresh/",
    )
    assert status == 403
    shot(browser, "view-only")
