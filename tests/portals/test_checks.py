"""System checks guarding the OAuth allow-list and the production registration."""

from __future__ import annotations

from portals.checks import oauth_servers_valid, production_registration


def ids(messages) -> set[str]:
    return {m.id for m in messages}


def test_allow_list_must_be_https_bare_hosts(settings):
    settings.BITRIX24_ALLOW_HTTP = False
    settings.BITRIX24_OAUTH_SERVERS = ["https://oauth.bitrix.info/"]
    assert oauth_servers_valid(None) == []
    settings.BITRIX24_OAUTH_SERVERS = ["http://oauth.bitrix.info/"]
    assert ids(oauth_servers_valid(None)) == {"portals.E004"}
    settings.BITRIX24_ALLOW_HTTP = True
    assert oauth_servers_valid(None) == []
    settings.BITRIX24_OAUTH_SERVERS = ["https://oauth.bitrix.info/rest/"]
    assert ids(oauth_servers_valid(None)) == {"portals.E005"}
    settings.BITRIX24_OAUTH_SERVERS = []
    assert ids(oauth_servers_valid(None)) == {"portals.E003"}


def test_production_needs_the_registration(settings):
    settings.BITRIX24_ALLOW_HTTP = False
    settings.BITRIX24_CLIENT_ID, settings.BITRIX24_CLIENT_SECRET = "app.x", "secret"
    assert production_registration(None) == []
    settings.BITRIX24_CLIENT_SECRET = ""
    settings.BITRIX24_ALLOW_HTTP = True
    assert ids(production_registration(None)) == {"portals.E006", "portals.W001"}
