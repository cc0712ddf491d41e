"""Our client next to fast-bitrix24 and b24pysdk on the same scenarios, against the same sandbox.

    .venv/bin/python bench/client_compare.py [--rows 20000] [--updates 1000] [--cap 240]

The two public libraries run unchanged in their own virtualenv (created under var/ on first use,
installed only there) and each run is a fresh interpreter capped at ``--cap`` seconds. Each
scenario starts from a reset sandbox (standard plan, default costs, 4 requests at once per portal)
and reports rows per second, the physical limit (same formula as bench/client_run.py), the
ratio, and how many requests Bitrix24 refused (503 QUERY_LIMIT_EXCEEDED).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.client_run import bound_seconds  # noqa: E402 - one formula for both benchmarks
from sandbox.config import Config, CostModel  # noqa: E402
from sandbox.testing import SandboxServer  # noqa: E402

VENV = ROOT / "var" / "bench-client-venv"
PACKAGES = ["fast-bitrix24>=1.8,<2", "b24pysdk>=1.3,<2"]
COST, P, DRAIN, BURST = CostModel(), Config().concurrency, 2.0, 50
T_LIST = COST.per_call + 50 * COST.per_row
T_UPDATE = COST.per_call + COST.per_write

# Each script: argv = webhook URL, n; prints {"rows": done}. Timing is taken around the run.
SCRIPTS = {
    ("fast-bitrix24", "read"): """
        import sys
        from fast_bitrix24 import Bitrix
        b = Bitrix(sys.argv[1], verbose=False)
        rows = b.get_all("crm.deal.list", params={"select": ["ID", "TITLE", "STAGE_ID"]})
        print(len(rows))
    """,
    ("fast-bitrix24", "update"): """
        import sys
        from fast_bitrix24 import Bitrix
        b = Bitrix(sys.argv[1], verbose=False)
        n = int(sys.argv[2])
        b.call("crm.deal.update", [{"ID": i, "fields": {"STAGE_ID": "WON"}} for i in range(1, n + 1)])
        print(n)
    """,
    ("b24pysdk", "read"): """
        import sys
        from urllib.parse import urlsplit
        from b24pysdk import BitrixWebhook, Client
        parts = urlsplit(sys.argv[1])
        user, secret = [s for s in parts.path.split("/") if s][1:3]
        client = Client(BitrixWebhook(domain=parts.netloc, webhook_token=f"{user}/{secret}"))
        rows = client.crm.deal.list(select=["ID", "TITLE", "STAGE_ID"]).as_list_fast().result
        print(len(list(rows)))
    """,
    ("b24pysdk", "update"): """
        import sys
        from urllib.parse import urlsplit
        from b24pysdk import BitrixWebhook, Client
        parts = urlsplit(sys.argv[1])
        user, secret = [s for s in parts.path.split("/") if s][1:3]
        client = Client(BitrixWebhook(domain=parts.netloc, webhook_token=f"{user}/{secret}"))
        n = int(sys.argv[2])
        requests = [client.crm.deal.update(bitrix_id=i, fields={"STAGE_ID": "WON"}) for i in range(1, n + 1)]
        client.call_batches(requests).result
        print(n)
    """,
    ("ours", "read"): """
        import sys
        sys.path.insert(0, sys.argv[3])
        from portals.bitrix.client import Bitrix24Client
        from portals.bitrix.credentials import WebhookCredentials
        from portals.bitrix.transport import Transport, TransportConfig
        import os
        client = Bitrix24Client(WebhookCredentials(sys.argv[1]),
                                transport=Transport(TransportConfig(ca_bundle=os.environ["SSL_CERT_FILE"])))
        print(sum(1 for _ in client.list_all("crm.deal.list", {"select": ["ID", "TITLE", "STAGE_ID"]})))
    """,
    ("ours", "update"): """
        import sys
        sys.path.insert(0, sys.argv[3])
        from portals.bitrix.client import Bitrix24Client
        from portals.bitrix.credentials import WebhookCredentials
        from portals.bitrix.transport import Transport, TransportConfig
        import os
        client = Bitrix24Client(WebhookCredentials(sys.argv[1]),
                                transport=Transport(TransportConfig(ca_bundle=os.environ["SSL_CERT_FILE"])))
        n = int(sys.argv[2])
        commands = [("crm.deal.update", {"id": i, "fields": {"STAGE_ID": "WON"}}) for i in range(1, n + 1)]
        result = client.batch(commands)
        print(sum(1 for r in result.values() if r.ok))
    """,
}


def ensure_venv(console: Console) -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        console.print(f"[dim]creating {VENV.relative_to(ROOT)} with {', '.join(PACKAGES)}…[/dim]")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


def limit_for(kind: str, n: int) -> float:
    requests = math.ceil(n / (2500 if kind == "read" else 50))
    per_request = 50 * (T_LIST if kind == "read" else T_UPDATE)
    return n / bound_seconds(requests, per_request)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000, help="deals to read")
    parser.add_argument("--updates", type=int, default=1_000, help="deals to update")
    parser.add_argument("--cap", type=float, default=240.0, help="seconds per run before it is stopped")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 160))
    venv_python = ensure_venv(console)
    table = Table(title="Same scenarios, same sandbox: ours vs fast-bitrix24 vs b24pysdk")
    for name in ("library", "scenario", "figure", "physical limit", "ratio", "503s", "notes"):
        table.add_column(name)
    with SandboxServer(deals=20, startup_timeout=60) as sandbox:
        env = {**os.environ, **sandbox.env()}
        member = sandbox.portal(1)["member_id"]
        for kind, n in (("read", args.rows), ("update", args.updates)):
            for library in ("ours", "fast-bitrix24", "b24pysdk"):
                sandbox.reset()
                sandbox.control("seed", member_id=member, deals=max(n, 20))
                url = sandbox.control("webhook", member_id=member)["url"]
                python = sys.executable if library == "ours" else str(venv_python)
                script = textwrap.dedent(SCRIPTS[(library, kind)])
                started = time.monotonic()
                note = ""
                try:
                    done = subprocess.run(
                        [python, "-c", script, url, str(n), str(ROOT)],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=args.cap,
                    )
                    elapsed = time.monotonic() - started
                    rows = int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0
                    if done.returncode != 0:
                        note = "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:80]
                except subprocess.TimeoutExpired:
                    elapsed, rows, note = args.cap, 0, f"stopped at the {args.cap:.0f}s cap"
                answers = sandbox.counters()["answers"]["by_portal"].get(member, {})
                figure = rows / elapsed if rows else 0.0
                limit = limit_for(kind, n)
                if rows and rows != n:
                    note = f"{rows:,} of {n:,} rows"
                table.add_row(
                    library,
                    f"{'read' if kind == 'read' else 'update'} {n:,} deals",
                    f"{figure:,.1f} rows/s" + (f" ({elapsed:.1f}s)" if rows else ""),
                    f"{limit:,.1f}",
                    f"{figure / limit:.0%}" if figure else "",
                    str(answers.get("QUERY_LIMIT_EXCEEDED", 0)),
                    note,
                )
                console.print(f"[dim]{library} {kind}: {figure:,.1f} rows/s {note}[/dim]")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
