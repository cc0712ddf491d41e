"""The operating ledger paces a method that nears its limit, so Bitrix24 never blocks it."""

from __future__ import annotations

import pytest

from portals.bitrix.operating import OperatingLedger
from tests.fixtures.client import RecordingSleep


@pytest.mark.slow
def test_a_hot_method_is_paced_below_its_limit(make_client, sandbox, sandbox_portal, redis_client) -> None:
    from django.conf import settings

    # 1 s of server time per 4 s window for each method; each list page costs ~0.09 s.
    sandbox.control("config", operating_limit=1.0, operating_window=4.0, cost={"scale": 3.0})
    sleep = RecordingSleep(cap=10)
    ledger = OperatingLedger(limit=1.0, headroom=0.25, redis=redis_client, prefix=settings.REDIS_KEY_PREFIX)
    client = make_client(ledger=ledger, sleep=sleep)
    try:
        for _ in range(25):
            assert len(client.call("crm.deal.list", {"select": ["ID"], "start": -1})) > 0
            client.call("crm.deal.get", {"id": 1})
    finally:
        sandbox.control("config", operating_limit=480.0, operating_window=600.0, cost={"scale": 1.0})
    answers = sandbox.counters()["answers"]["by_portal"][sandbox_portal.member_id]
    assert answers.get("OPERATION_TIME_LIMIT", 0) == 0
    assert answers["OK"] == 50
    assert any(s > 0.5 for s in sleep.calls)  # it did have to wait for resets
    spent = client.metrics.snapshot()[sandbox_portal.member_id]
    assert spent["operating_seconds:crm.deal.list"] > 1.0  # more than one window's worth, paced
