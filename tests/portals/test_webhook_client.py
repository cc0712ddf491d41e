"""Every webhook client refuses to send a webhook's secret over plain http, not only the CLI's."""

from __future__ import annotations

import pytest

from portals.bitrix.exceptions import Bitrix24ConfigError
from portals.services.client import client_for_webhook

SECRET = "s3cr3tw3bh00k"


@pytest.mark.django_db
def test_an_http_webhook_is_refused_without_repeating_its_secret(settings):
    settings.BITRIX24_ALLOW_HTTP = False
    with pytest.raises(Bitrix24ConfigError, match="must start with https://") as refused:
        client_for_webhook(url=f"http://portal.example.com/rest/1/{SECRET}/")
    assert SECRET not in str(refused.value)
    settings.BITRIX24_ALLOW_HTTP = True
    assert client_for_webhook(url=f"http://portal.example.com/rest/1/{SECRET}/") is not None
    for url in (f"ftp://portal.example.com/rest/1/{SECRET}/", f"portal.example.com/rest/1/{SECRET}/"):
        with pytest.raises(Bitrix24ConfigError):
            client_for_webhook(url=url)
