"""Public clients, unchanged, read and write through the sandbox in webhook mode over HTTPS.

Each runs in a fresh interpreter so it picks up our CA exactly as it would in production: through
the variables it reads (requests: REQUESTS_CA_BUNDLE; aiohttp/OpenSSL: SSL_CERT_FILE) at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

FAST_BITRIX24 = textwrap.dedent(
    """
    import json, sys
    from fast_bitrix24 import Bitrix

    b = Bitrix(sys.argv[1], verbose=False)
    deals = b.get_all("crm.deal.list", params={"select": ["ID", "TITLE"]})
    ids = b.call("crm.deal.add", [{"fields": {"TITLE": f"fast {i}"}} for i in range(3)])
    b.call("crm.deal.update", [{"ID": i, "fields": {"COMMENTS": "updated by fast_bitrix24"}} for i in ids])
    got = b.get_by_ID("crm.deal.get", ids)
    print(json.dumps({"listed": len(deals), "ids": list(ids), "got": got}))
    """
)

B24PYSDK = textwrap.dedent(
    """
    import json, sys
    from b24pysdk import BitrixWebhook, Client

    domain, token = sys.argv[1], sys.argv[2]
    client = Client(BitrixWebhook(domain=domain, webhook_token=token))
    listed = client.crm.deal.list(select=["ID", "TITLE"]).as_list().result
    new_id = client.crm.deal.add(fields={"TITLE": "from b24pysdk", "OPPORTUNITY": 42}).result
    client.crm.deal.update(bitrix_id=new_id, fields={"STAGE_ID": "WON"}).result
    row = client.crm.deal.get(bitrix_id=new_id).result
    print(json.dumps({"listed": len(listed), "id": new_id, "row": row}))
    """
)


def _run(sandbox, script: str, *args: str) -> dict:
    env = {**os.environ, "REQUESTS_CA_BUNDLE": sandbox.ca_bundle, "SSL_CERT_FILE": sandbox.ca_bundle}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fast_bitrix24_reads_and_writes_deals(sandbox):
    out = _run(sandbox, FAST_BITRIX24, sandbox.portal(1)["webhook_url"])
    assert out["listed"] == 120
    assert out["ids"] == [121, 122, 123]
    by_id = {int(k): v for k, v in out["got"].items()}
    assert sorted(by_id) == [121, 122, 123]
    assert all(row["COMMENTS"] == "updated by fast_bitrix24" for row in by_id.values())
    counters = sandbox.counters()
    assert counters["writes"][sandbox.portal(1)["member_id"]]["crm.deal.add"] == 3


def test_b24pysdk_reads_and_writes_deals(sandbox):
    portal = sandbox.portal(1)
    token = portal["webhook_url"].split("/rest/", 1)[1]
    out = _run(sandbox, B24PYSDK, portal["domain"], token)
    assert out["listed"] == 120
    assert out["id"] == 121
    assert out["row"]["TITLE"] == "from b24pysdk" and out["row"]["STAGE_ID"] == "WON"
    assert out["row"]["OPPORTUNITY"] == "42.00"
