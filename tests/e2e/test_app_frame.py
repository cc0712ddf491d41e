"""The app page inside the portal's iframe, in a real browser: the portal may frame it, the BX24 shim
works across the frame boundary, and a site that is not the portal cannot frame it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures.e2e import WAIT, framing_page

pytestmark = pytest.mark.django_db(transaction=True)


def document_responses(browser: Any, url_prefix: str) -> list[dict[str, Any]]:
    """Responses to documents under ``url_prefix`` the browser received, from its network log
    (headers lower-cased)."""
    found = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.responseReceived":
            continue
        params = message["params"]
        response = params["response"]
        if params.get("type") == "Document" and response["url"].startswith(url_prefix):
            found.append(
                {
                    "url": response["url"],
                    "status": response["status"],
                    "headers": {k.lower(): v for k, v in response["headers"].items()},
                }
            )
    return found


def test_the_app_page_opens_inside_the_portal_frame(browser, e2e_app, installed_portal):
    wait = WebDriverWait(browser, WAIT)
    browser.get(e2e_app.portal_page())
    browser.find_element(By.XPATH, "//button[normalize-space()='Open the app']").click()

    wait.until(ec.frame_to_be_available_and_switch_to_it((By.ID, "app-frame")))
    heading = wait.until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == e2e_app.domain()
    assert browser.execute_script("return window.location.href").startswith(f"{e2e_app.url}/bitrix/app/")
    # The shim in the frame got its context from the portal page, and a REST call made through it
    # (postMessage to the parent, which calls its own /rest/) answers.
    answer = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        BX24.init(function () {
          BX24.callMethod("app.info", {}, function (result) {
            done({domain: BX24.getDomain(), error: result.error() ? String(result.error()) : null,
                  data: result.data()});
          });
        });
        """
    )
    assert answer["domain"] == e2e_app.domain()
    assert answer["error"] is None and answer["data"]["INSTALLED"] is True
    browser.switch_to.default_content()

    (response,) = document_responses(browser, f"{e2e_app.url}/bitrix/app/")
    assert response["status"] == 200
    policy = response["headers"]["content-security-policy"]
    host = e2e_app.domain().split(":")[0]
    assert policy == f"frame-ancestors 'self' https://{e2e_app.domain()} http://{host}:*"
    assert "x-frame-options" not in response["headers"]


def frame_in_page(browser: Any, page: str) -> Any:
    """Open ``page`` (a framing_page) and wait until its frame finished loading (or was refused)."""
    browser.get(page)
    WebDriverWait(browser, WAIT).until(lambda b: b.execute_script("return window.frameLoaded === true"))
    return browser.find_element(By.ID, "app-frame")


def rendered_app_heading(browser: Any, frame: Any) -> str | None:
    """The app page's heading inside ``frame``, or None when the frame holds no app page."""
    browser.switch_to.frame(frame)
    try:
        headings = browser.find_elements(By.TAG_NAME, "h1")
        return headings[0].text if headings else None
    finally:
        browser.switch_to.default_content()


def test_another_site_cannot_frame_the_app_page(browser, e2e_app, installed_portal, page_server):
    """The same framing page, with a valid frame POST, served from two hosts: from the portal's host
    (allowed in development: http on any port of it) the app renders; from another loopback address
    the browser refuses to show it (CSP frame-ancestors), although the app answered."""
    host = e2e_app.domain().split(":")[0]

    def frame_post() -> dict[str, Any]:
        return e2e_app.sandbox.control("lifecycle/frame", portal=1)

    allowed = page_server(host)
    page = framing_page(title="framed from the portal's host", **_form(frame_post()))
    frame = frame_in_page(browser, allowed.add("/frame.html", page))
    assert rendered_app_heading(browser, frame) == e2e_app.domain()

    browser.get_log("browser")
    browser.get_log("performance")
    other = page_server("127.0.0.203")
    page = framing_page(title="framed by another site", **_form(frame_post()))
    frame = frame_in_page(browser, other.add("/frame.html", page))
    assert rendered_app_heading(browser, frame) != e2e_app.domain()
    # The app did answer with its page: the browser refused to show it, for frame-ancestors.
    (response,) = document_responses(browser, f"{e2e_app.url}/bitrix/app/")
    assert response["status"] == 200
    assert other.origin not in response["headers"]["content-security-policy"]
    refusals = [e["message"] for e in browser.get_log("browser") if "frame-ancestors" in e["message"]]
    assert len(refusals) == 1 and e2e_app.url in refusals[0] and "blocked" in refusals[0]


def _form(frame: dict[str, Any]) -> dict[str, Any]:
    return {"url": frame["url"], "query": frame["query"], "body": frame["body"]}
