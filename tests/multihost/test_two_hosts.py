"""Two "hosts" on loopback (127.0.0.11 and 127.0.0.12), each with its own web process (granian, as
deploy/web.sh runs it) and Celery worker, sharing one PostgreSQL database, one Redis, one beat and the
sandbox portal: installs, events, the 16-racer refresh, the shared bucket and the concurrency cap keep
the guarantees they have on one host (README, Token refresh policy; docs/client.md; docs/events.md)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection
from qs_codec import EncodeOptions, encode

from bench.faults_cluster import CREATE, REFRESHER, ROOT, TABLE, Cluster, Host, app_env
from events.models import Event
from portals.bitrix.client import Bitrix24Client
from portals.models import Portal
from tests.fixtures.events import form_body, load_payload
from tests.fixtures.portals import event_claim_payload, expire_access_token, issue_tokens, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CONCURRENCY = 2  # BITRIX24_CLIENT_CONCURRENCY on both hosts
# The portal's cap across both hosts, as Bitrix24Client holds its shared slots: the requests the
# portal processes at once plus the one kept queued behind them (``in_flight``).
CAP = CONCURRENCY + inspect.signature(Bitrix24Client).parameters["queued"].default
RACERS = 16


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, sandbox_server, tmp_path_factory):
    """Both hosts and the beat, started once for the module against the test database."""
    with django_db_blocker.unblock():
        db = connection.settings_dict
        with connection.cursor() as cursor:
            cursor.execute(CREATE)
    env = app_env(
        database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        redis_url=settings.REDIS_URL,
        # Not under the suite's prefix: the redis_client fixture wipes that between tests.
        prefix=settings.REDIS_KEY_PREFIX.rstrip(":") + "-hosts:",
        queue=settings.CELERY_TASK_DEFAULT_QUEUE + "-hosts",
        sandbox_state=sandbox_server.state,
    )
    env.update({"FAULTS_FETCH": "1", "BITRIX24_CLIENT_CONCURRENCY": str(CONCURRENCY)})
    cluster = Cluster(env=env, workdir=tmp_path_factory.mktemp("hosts"))
    cluster.env["BITRIX24_APP_URL"] = cluster.hosts[0].url  # the public URL both hosts serve
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


@pytest.fixture
def hosts(cluster, portals_sandbox):
    """The cluster, with this test's dispatch records emptied; idle again when the test ends."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")
    broker = redis.Redis.from_url(cluster.env["REDIS_URL"])
    yield cluster
    try:
        cluster.wait_idle(broker)
    except TimeoutError:
        pytest.fail(cluster.log_tail())


def install_through(host: Host, sandbox, index: int) -> tuple[Portal, dict[str, Any]]:
    """Install sandbox portal ``index`` by posting ONAPPINSTALL to ``host``'s installer."""
    tokens = issue_tokens(sandbox, index)
    body = encode(event_claim_payload(tokens), options=EncodeOptions(encode=True))
    answer = requests.post(f"{host.url}/bitrix/install/", data=body, headers=FORM, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    portal = Portal.objects.get(member_id=tokens["member_id"])
    assert portal.state == Portal.State.ACTIVE
    return portal, tokens


def deal_event(tokens: dict[str, Any], deal_id: int) -> bytes:
    auth = {"member_id": tokens["member_id"], "application_token": tokens["application_token"]}
    return form_body(load_payload("oncrmdealupdate__basic", data={"FIELDS": {"ID": str(deal_id)}}, auth=auth))


def send(host: Host, body: bytes) -> str:
    answer = requests.post(f"{host.url}/bitrix/events/", data=body, headers=FORM, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    return str(answer.json()["result"])


def dispatches() -> list[tuple[int, str, str]]:
    """(portal id, deal id, host) of every committed dispatch."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT portal_id, object_id, host FROM {TABLE}")
        return [(int(p), str(o), str(h)) for p, o, h in cursor.fetchall()]


def wait_dispatched(count: int, cluster: Cluster, timeout: float = 90.0) -> list[tuple[int, str, str]]:
    try:
        wait_for(lambda: len(dispatches()) >= count, timeout=timeout, what=f"{count} dispatches")
    except AssertionError:
        pytest.fail(f"{len(dispatches())} of {count} dispatched\n{cluster.log_tail()}")
    return dispatches()


def test_installs_and_events_through_both_hosts_are_stored_and_dispatched_once(hosts, portals_sandbox):
    first, second = hosts.hosts
    portal_a, tokens_a = install_through(first, portals_sandbox, 1)
    portal_b, tokens_b = install_through(second, portals_sandbox, 2)
    sent = []
    for n in range(1, 31):
        tokens, portal = (tokens_a, portal_a) if n % 2 else (tokens_b, portal_b)
        body = deal_event(tokens, n)
        receiver, other = (first, second) if n % 3 else (second, first)
        # Each change reaches both hosts (two bindings, a retried delivery): stored once.
        assert send(receiver, body) == "accepted"
        assert send(other, body) == "duplicate"
        sent.append((portal.pk, str(n)))
    wait_dispatched(len(sent), hosts)
    # Nothing queued or running any more: a second dispatch of any event would be counted below.
    hosts.wait_idle(redis.Redis.from_url(hosts.env["REDIS_URL"]))
    done = dispatches()
    assert Counter((p, o) for p, o, _ in done) == Counter(sent)
    assert Event.objects.filter(status="done").count() == len(sent) == Event.objects.count()
    # Both installs bound the app's events through whichever worker took the task.
    for tokens in (tokens_a, tokens_b):
        registered = portals_sandbox.control_get(f"lifecycle/registrations?portal={tokens['member_id']}")
        assert "ONCRMDEALUPDATE" in {h["event"] for h in registered["handlers"]}


def test_sixteen_refreshers_on_two_hosts_make_one_grant(hosts, portals_sandbox):
    first, _ = hosts.hosts
    portal, tokens = install_through(first, portals_sandbox, 1)
    hosts.wait_idle(redis.Redis.from_url(hosts.env["REDIS_URL"]))  # the install's binding is done
    stale = expire_access_token(portal)
    grants = portals_sandbox.counters()["token_grants"].get(portal.member_id, {}).get("refresh_token", 0)
    barrier = f"{hosts.env['REDIS_KEY_PREFIX']}test:barrier"
    redis.Redis.from_url(hosts.env["REDIS_URL"]).delete(barrier)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", REFRESHER, str(portal.pk), stale, barrier, str(RACERS)],
            cwd=ROOT,
            env=hosts.host_env(hosts.hosts[n % 2]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(RACERS)
    ]
    results = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err[-500:] for _, err in results]
    assert all(out.split()[0] == "ok" for out, _ in results), [out for out, _ in results]
    fresh = {out.split()[1] for out, _ in results}
    assert len(fresh) == 1 and stale not in fresh
    counters = portals_sandbox.counters()
    assert counters["token_grants"][portal.member_id]["refresh_token"] - grants == 1
    assert counters["refresh_token_reuse"]["by_portal"].get(portal.member_id, 0) == 0
    portal.refresh_from_db()
    assert portal.access_token in fresh and portal.state == Portal.State.ACTIVE


def test_load_from_both_hosts_keeps_the_shared_bucket_and_the_concurrency_cap(hosts, portals_sandbox):
    first, second = hosts.hosts
    portal, tokens = install_through(second, portals_sandbox, 3)
    hosts.wait_idle(redis.Redis.from_url(hosts.env["REDIS_URL"]))
    # Each call stays a while at the portal, so the dispatchers of both hosts overlap there.
    portals_sandbox.control("faults", member_id=portal.member_id, kind="latency", delay=0.5)
    before = portals_sandbox.counters()["calls"].get(portal.member_id, {}).get("crm.deal.get", 0)
    # More deal fetches than the portal's burst (50): one limiter per host would let through up
    # to twice its share at once, and the sandbox would refuse the excess.
    events = 70
    for n in range(1, events + 1):
        assert send(first if n % 2 else second, deal_event(tokens, n)) == "accepted"
    done = wait_dispatched(events, hosts, timeout=150)
    hosts.wait_idle(redis.Redis.from_url(hosts.env["REDIS_URL"]))
    counters = portals_sandbox.counters()
    member = portal.member_id
    # Other features of the app (a sync on install) call the portal too: all of it shares the bucket.
    answers = counters["answers"]["by_portal"][member]
    assert counters["calls"][member]["crm.deal.get"] - before >= events
    assert sum(answers.values()) > 50 and answers.get("QUERY_LIMIT_EXCEEDED", 0) == 0
    # Never more than the cap in flight at once across both hosts (on a loaded machine the calls
    # may not even overlap: reaching the cap is not the point, never passing it is).
    assert 1 <= counters["max_in_flight"][member] <= CAP, (
        counters["max_in_flight"][member],
        counters["calls"][member],
    )
    assert {host for _, _, host in done} == {"host1", "host2"}  # both hosts' workers dispatched
    assert Counter(o for _, o, _ in dispatches()) == Counter(str(n) for n in range(1, events + 1))
    assert Event.objects.filter(status="done").count() == events
