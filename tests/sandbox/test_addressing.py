"""Addressing: each portal on its own loopback address, Host checked, HTTPS with our CA, plain HTTP
for tools, the OAuth server on its own address."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import pytest
import requests

from tests.sandbox.helpers import hook_call, webhook


def test_each_portal_has_its_own_loopback_address_and_data(sandbox):
    first, second = (
        urlsplit(sandbox.portal(1)["client_endpoint"]),
        urlsplit(sandbox.portal(2)["client_endpoint"]),
    )
    assert first.hostname == "127.0.0.2" and second.hostname == "127.0.0.3"
    assert first.port == second.port
    created = hook_call(sandbox, "crm.deal.add", portal=1, fields={"TITLE": "only on portal one"}).json()[
        "result"
    ]
    on_one = hook_call(sandbox, "crm.deal.list", portal=1, filter={"TITLE": "only on portal one"}).json()
    on_two = hook_call(sandbox, "crm.deal.list", portal=2, filter={"TITLE": "only on portal one"}).json()
    assert [row["ID"] for row in on_one["result"]] == [str(created)]
    assert on_two["result"] == []


def test_host_header_must_name_the_portal(sandbox):
    url = webhook(sandbox, 1) + "profile"
    wrong_host = sandbox.portal(2)["domain"]
    response = requests.get(url, headers={"Host": wrong_host}, verify=sandbox.ca_bundle, timeout=10)
    assert response.status_code == 404
    assert requests.get(url, verify=sandbox.ca_bundle, timeout=10).status_code == 200


def test_https_is_served_with_the_generated_ca_and_refused_without_it(sandbox):
    url = webhook(sandbox) + "server.time"
    assert requests.get(url, verify=sandbox.ca_bundle, timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=True, timeout=10)
    # The certificate names the portal's IP address, so hostname checking passes for real.
    context = ssl.create_default_context(cafile=sandbox.ca_bundle)
    assert context.check_hostname


def test_plain_http_endpoint_answers_for_tools(sandbox):
    portal = sandbox.portal(1)
    secret_path = urlsplit(portal["webhook_url"]).path  # /rest/1/<secret>/
    http_url = portal["http_endpoint"].removesuffix("/rest/") + secret_path + "crm.deal.get"
    response = requests.get(http_url, params={"id": 1}, timeout=10)
    assert response.status_code == 200
    assert response.json()["result"]["ID"] == "1"


def test_oauth_server_has_its_own_address(sandbox):
    oauth = urlsplit(sandbox.state["oauth_server"])
    assert oauth.hostname == "127.0.0.1"
    assert all(urlsplit(p["client_endpoint"]).hostname != "127.0.0.1" for p in sandbox.state["portals"])
    # The OAuth host does not serve portal REST methods.
    response = requests.get(
        sandbox.state["server_endpoint"] + "crm.deal.list", verify=sandbox.ca_bundle, timeout=10
    )
    assert response.status_code == 404
    assert response.json()["error"] == "ERROR_METHOD_NOT_FOUND"
