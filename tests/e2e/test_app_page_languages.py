"""The app's page framed by the sandbox portal, in both languages, with and without the BX24
library; neither it nor the console can be framed by another site. Screenshots are saved as test
artefacts (var/e2e/)."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures.e2e import SCREENSHOTS, WAIT, framing_page

pytestmark = pytest.mark.django_db(transaction=True)


def framed(browser: Any, e2e_app: Any, server: Any, *, lang: str, name: str) -> Any:
    """The app page inside a page of ``server`` (as the portal frames it), switched into."""
    frame_post = e2e_app.sandbox.control("lifecycle/frame", portal=1)
    page = framing_page(
        title=f"portal ({lang})",
        url=frame_post["url"],
        query={**frame_post["query"], "LANG": lang},
        body=frame_post["body"],
    )
    browser.get(server.add(f"/{name}.html", page))
    WebDriverWait(browser, WAIT).until(lambda b: b.execute_script("return window.frameLoaded === true"))
    return browser.find_element(By.ID, "app-frame")


@pytest.mark.parametrize(
    ("lang", "status", "needs"),
    [("en", "working", "What needs your action"), ("ru", "работает", "Что требует вашего действия")],
)
def test_the_framed_app_page_in_both_languages(
    browser, e2e_app, installed_portal, page_server, lang, status, needs
):
    portal_host = page_server(e2e_app.domain().split(":")[0])
    frame = framed(browser, e2e_app, portal_host, lang=lang, name=f"app-{lang}")
    browser.switch_to.frame(frame)
    try:
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
        assert browser.find_element(By.ID, "app-state").text == status
        assert browser.find_element(By.CSS_SELECTOR, "#needs-action h2").text == needs
        assert browser.find_element(By.ID, "settings-form").is_displayed()  # the sandbox's user 1 is an admin
        assert not browser.find_element(By.ID, "bx24-notice").is_displayed()  # the library loaded
    finally:
        browser.switch_to.default_content()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"app-page-{lang}.png"))


def test_without_the_bx24_library_the_page_works_and_says_so(
    browser, e2e_app, installed_portal, page_server, settings
):
    settings.BITRIX24_JS_SDK_URL = "http://127.0.0.1:9/bx24-unreachable.js"
    portal_host = page_server(e2e_app.domain().split(":")[0])
    frame = framed(browser, e2e_app, portal_host, lang="en", name="no-bx24")
    browser.switch_to.frame(frame)
    try:
        notice = WebDriverWait(browser, WAIT).until(
            lambda b: b.find_element(By.ID, "bx24-notice").is_displayed()
        )
        assert notice and browser.find_element(By.ID, "app-state").text == "working"
    finally:
        browser.switch_to.default_content()
    browser.save_screenshot(str(SCREENSHOTS / "app-page-without-bx24.png"))


def test_another_site_frames_neither_the_app_page_nor_the_console(
    browser, e2e_app, installed_portal, page_server
):
    other = page_server("127.0.0.204")
    frame = framed(browser, e2e_app, other, lang="en", name="foreign")
    browser.switch_to.frame(frame)
    try:
        assert browser.find_elements(By.ID, "app-state") == []
    finally:
        browser.switch_to.default_content()
    console = other.add(
        "/console.html",
        f'<!doctype html><iframe id="c" src="{e2e_app.url}/admin/login/" '
        'onload="window.frameLoaded=true"></iframe>'
        "<script>window.frameLoaded=false</script>",
    )
    browser.get(console)
    WebDriverWait(browser, WAIT).until(lambda b: b.execute_script("return window.frameLoaded === true"))
    browser.switch_to.frame(browser.find_element(By.ID, "c"))
    try:
        assert browser.find_elements(By.ID, "id_username") == []
    finally:
        browser.switch_to.default_content()
