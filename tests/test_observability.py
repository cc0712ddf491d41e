"""Observability: the client's address, /healthz, /readyz, /metrics (counted through the real paths),
the JSON log mode with request ids, Sentry without secrets, and `manage.py bitrix doctor`."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from bitrix_app.celery import app
from bitrix_app.client_ip import client_ip_from, parse_networks
from bitrix_app.logs import KeyValueFormatter
from portals.bitrix.metrics import OTHER, BoundedLabel
from portals.services.client import client_for_portal
from tests.fixtures.events import form_body, load_payload
from tests.test_security_settings import manage

FORM = "application/x-www-form-urlencoded"
LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- client_ip ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.9", "", "203.0.113.9"),  # no proxy
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted sender's header is ignored
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),  # nginx on loopback says who it saw
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own entry is not believed
        ("127.0.0.1", "198.51.100.1, 127.0.0.2", "198.51.100.1"),  # trusted hops are skipped
        ("127.0.0.1", "127.0.0.2", "127.0.0.2"),  # all trusted: the left-most hop
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1, not-an-ip", "127.0.0.1"),  # garbage stops the walk
        ("127.0.0.1", "[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:127.0.0.1", "198.51.100.1:5000", "198.51.100.1"),  # IPv4-mapped proxy address
    ],
)
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(remote, forwarded, expected):
    meta = {"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded}
    assert client_ip_from(meta, LOOPBACK) == expected


def test_client_ip_without_trusted_proxies_is_remote_addr():
    assert client_ip_from({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, ()) == "127.0.0.1"


def test_a_bad_cidr_is_refused_with_its_name():
    with pytest.raises(ValueError, match="10.0.0.300/8"):
        parse_networks(["10.0.0.0/8", "10.0.0.300/8"])
    done = manage("check", TRUSTED_PROXIES="10.0.0.0/8,nonsense")
    assert done.returncode != 0 and "TRUSTED_PROXIES: not an IP network: 'nonsense'" in done.stderr


def test_refusal_log_is_keyed_by_the_forwarded_client(client, caplog):
    """Two clients behind one nginx get a refusal line each: the rate limit is per client, not per proxy."""
    from events.views import _log_refusal

    _log_refusal.clear()
    with caplog.at_level(logging.WARNING, logger="events"):
        for address in ("198.51.100.1", "198.51.100.2", "198.51.100.2"):
            response = client.generic(
                "POST", "/bitrix/events/", b"event=ONX", content_type=FORM, HTTP_X_FORWARDED_FOR=address
            )
            assert response.status_code == 400
    remotes = [r.remote for r in caplog.records if r.getMessage() == "events.refused"]
    assert remotes == ["198.51.100.1", "198.51.100.2"]
    _log_refusal.clear()


# --- probes ---------------------------------------------------------------------------------------


def test_healthz_answers_any_host_over_http(client, settings):
    settings.ALLOWED_HOSTS = ["app.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200 and response.content == b"ok\n"
    # The control: any other path from that host is refused by host validation.
    assert client.get("/bitrix/install/", HTTP_HOST="10.1.2.3:8000").status_code == 400


@pytest.mark.django_db
def test_readyz_checks_database_migrations_redis_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "ready": True,
        "checks": {"database": "ok", "migrations": "ok", "redis": "ok", "broker": "ok"},
    }


@pytest.mark.django_db
def test_readyz_fails_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False and body["checks"]["redis"] == "failed: ConnectionError"
    assert body["checks"]["database"] == "ok"


def test_probes_refuse_other_methods(client):
    response = client.post("/readyz")
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_metrics_answer_only_allowed_addresses(client, settings):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    # Through nginx on loopback the client is the forwarded one: refused until it is allowed.
    forwarded = {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    refused = client.get("/metrics", **forwarded)
    assert refused.status_code == 403 and b"METRICS_ALLOWED_IPS" in refused.content
    settings.METRICS_ALLOWED_IPS = ["203.0.113.0/24"]
    assert client.get("/metrics", **forwarded).status_code == 200
    assert client.get("/metrics").status_code == 403
    # A sender that isn't a trusted proxy can't borrow the scraper's address.
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.7", **forwarded).status_code == 403


@pytest.mark.django_db
def test_metrics_page_has_the_outbox_depth_and_bitrix24_names(client, make_portal, recorder, redis_client):
    from events.models import Event

    recorder("ONCRMCONTACTUPDATE")
    payload = load_payload("oncrmcontactupdate__basic")
    make_portal(payload)
    before = Event.objects.pending().count()
    client.generic("POST", "/bitrix/events/", form_body(payload), content_type=FORM)
    page = client.get("/metrics").content.decode()
    assert f"bitrix24_events_outbox_depth {float(before + 1)}" in page
    assert 'bitrix24_events_received_total{outcome="accepted"}' in page
    assert "# TYPE bitrix24_rest_latency_seconds histogram" in page


# --- what is counted ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_rest_calls_limits_and_refreshes_are_counted(install_portal, portals_sandbox):
    from tests.fixtures.portals import expire_access_token

    portal = install_portal(1)
    ok = sample("bitrix24_rest_calls_total", method="profile", outcome="ok")
    limited = sample("bitrix24_rest_limited_total", status="503")
    refused = sample("bitrix24_rest_calls_total", method="profile", outcome="QUERY_LIMIT_EXCEEDED")
    retries = sample("bitrix24_rest_retries_total", cause="query_limit")
    refreshed = sample("bitrix24_token_refreshes_total", outcome="refreshed")
    portals_sandbox.control("faults", member_id=portal.member_id, kind="query_limit", count=1)
    expire_access_token(portal)
    client = client_for_portal(member_id=portal.member_id)
    assert client.call("profile")["ID"]
    assert sample("bitrix24_rest_calls_total", method="profile", outcome="ok") == ok + 1
    assert (
        sample("bitrix24_rest_calls_total", method="profile", outcome="QUERY_LIMIT_EXCEEDED") == refused + 1
    )
    assert sample("bitrix24_rest_limited_total", status="503") == limited + 1
    assert sample("bitrix24_rest_retries_total", cause="query_limit") == retries + 1
    assert sample("bitrix24_token_refreshes_total", outcome="refreshed") == refreshed + 1


@pytest.mark.django_db(transaction=True)
def test_events_are_counted_from_intake_to_dispatch(client, make_portal, recorder, celery_tasks):
    rec = recorder("ONCRMCONTACTUPDATE")
    accepted = sample("bitrix24_events_received_total", outcome="accepted")
    refused = sample("bitrix24_events_refused_total", reason="invalid_application_token")
    done = sample("bitrix24_events_dispatched_total", outcome="done")
    lags = sample("bitrix24_events_dispatch_lag_seconds_count")
    payload = load_payload("oncrmcontactupdate__basic")
    make_portal(payload)
    answered = client.generic("POST", "/bitrix/events/", form_body(payload), content_type=FORM)
    assert answered.json()["result"] == "accepted"
    forged = load_payload("oncrmcontactupdate__basic", auth={"application_token": "forged"})
    assert client.generic("POST", "/bitrix/events/", form_body(forged), content_type=FORM).status_code == 403
    rec.wait_for(1)
    celery_tasks.wait_idle()
    assert sample("bitrix24_events_received_total", outcome="accepted") == accepted + 1
    assert sample("bitrix24_events_refused_total", reason="invalid_application_token") == refused + 1
    assert sample("bitrix24_events_dispatched_total", outcome="done") == done + 1
    assert sample("bitrix24_events_dispatch_lag_seconds_count") == lags + 1


def test_label_values_stay_bounded():
    label = BoundedLabel(3, r"[a-z.]+")
    values = {label(f"crm.item{'x' * i}.list") for i in range(10)} | {label("Evil Code!")}
    assert len(values - {OTHER}) == 3 and OTHER in values
    assert label("crm.itemx.list") == "crm.itemx.list"  # one seen before stays itself


def test_multiprocess_mode_sums_every_process(tmp_path):
    """Web and worker processes write their own files; one exposition sums them (prometheus-client)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = (
        "from portals.bitrix import metrics;"
        "metrics.token_refresh('refreshed'); metrics.event_refused('StaleEvent')"
    )
    for _ in range(3):  # three processes, as three web or worker processes would
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    show = "from portals.bitrix.metrics import exposition; print(exposition()[0].decode())"
    page = subprocess.run(
        [sys.executable, "-c", show], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert 'bitrix24_token_refreshes_total{outcome="refreshed"} 3.0' in page
    assert 'bitrix24_events_refused_total{reason="stale_event"} 3.0' in page
    assert len(list(tmp_path.glob("counter_*.db"))) == 4  # three writers, one reader


# --- logs -----------------------------------------------------------------------------------------


@pytest.fixture
def json_logs() -> Iterator[list[str]]:
    """Records of every logger, formatted by the JSON mode of the project's formatter."""
    lines: list[str] = []
    formatter = KeyValueFormatter(mode="json")

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Collect(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)


def test_json_lines_keep_every_field_and_hide_secrets(json_logs):
    logging.getLogger("portals").warning(
        "portal.refresh_unanswered",
        extra={
            "member_id": "m1",
            "attempts": 3,
            "auth": {"access_token": "AT-SECRET"},
            "refresh_token": "RT",
        },
    )
    entry = json.loads(json_logs[-1])
    assert entry["message"] == "portal.refresh_unanswered" and entry["level"] == "WARNING"
    assert (entry["member_id"], entry["attempts"], entry["logger"]) == ("m1", 3, "portals")
    assert entry["auth"] == "[hidden]" and entry["refresh_token"] == "[hidden]"
    assert "SECRET" not in json_logs[-1]


def test_the_log_format_setting_is_validated():
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of plain, json"):
        KeyValueFormatter(mode="yaml")
    done = manage(
        "shell",
        "-c",
        "import logging; logging.getLogger('x').warning('a.b', extra={'n': 1})",
        LOG_FORMAT="json",
    )
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert (line["message"], line["n"]) == ("a.b", 1)


@pytest.mark.django_db
def test_every_line_of_a_request_carries_its_request_id(client, json_logs):
    response = client.generic("POST", "/bitrix/events/", b"event=ONX", content_type=FORM)
    ours = [json.loads(line) for line in json_logs if '"events.refused"' in line]
    assert ours and ours[-1]["request_id"] == response["X-Request-ID"]
    assert len(response["X-Request-ID"]) == 32


def test_a_trusted_proxys_request_id_is_kept_and_a_strangers_is_not(client):
    given = "0123456789abcdef0123456789abcdef"
    assert client.get("/bitrix/install/", HTTP_X_REQUEST_ID=given)["X-Request-ID"] == given
    stranger = client.get("/bitrix/install/", HTTP_X_REQUEST_ID=given, REMOTE_ADDR="203.0.113.9")
    assert stranger["X-Request-ID"] != given
    assert client.get("/bitrix/install/", HTTP_X_REQUEST_ID="bad id\n")["X-Request-ID"] != "bad id\n"


@app.task(name="tests.test_observability.log_a_line")
def log_a_line() -> None:
    logging.getLogger("tests").warning("tests.task_line")


@pytest.mark.django_db(transaction=True)
def test_a_tasks_lines_carry_its_task_id(json_logs, celery_worker):
    result = log_a_line.delay()
    deadline = time.monotonic() + 20
    while not any('"tests.task_line"' in line for line in json_logs):
        assert time.monotonic() < deadline, "the worker did not run the task"
        time.sleep(0.05)
    entry = next(json.loads(line) for line in json_logs if '"tests.task_line"' in line)
    assert entry["request_id"] == result.id
    logging.getLogger("tests").warning("tests.after_task")
    assert "request_id" not in json.loads(json_logs[-1])  # the scope ended with the task


# --- Sentry ---------------------------------------------------------------------------------------


class _Envelopes(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        type(self).received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_sentry_gets_errors_without_secrets(tmp_path):
    """A loopback server stands in for Sentry: the error arrives, its token values don't."""
    _Envelopes.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Envelopes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        script = textwrap.dedent(
            """
            import logging, sentry_sdk
            logging.getLogger("portals").error(
                "portal.failed", extra={"access_token": "AT-SENTRY-LEAK", "member_id": "m1"})
            try:
                refresh_token = "RT-SENTRY-LEAK"
                raise RuntimeError("refresh failed")
            except RuntimeError:
                sentry_sdk.capture_exception()
            sentry_sdk.flush(5)
            """
        )
        dsn = f"http://public@127.0.0.1:{server.server_port}/1"
        # From a file, not the command line: the test's own source must not be what it searches for.
        path = tmp_path / "fail.py"
        path.write_text(script)
        done = manage("shell", "-c", f"exec(open({str(path)!r}).read())", SENTRY_DSN=dsn)
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
        server.server_close()
    sent = b"".join(_Envelopes.received)
    assert b"refresh failed" in sent and b"portal.failed" in sent
    assert b"SENTRY-LEAK" not in sent


def test_without_a_dsn_sentry_is_not_started():
    script = "import sentry_sdk; print(sentry_sdk.get_client().is_active())"
    assert manage("shell", "-c", script).stdout.splitlines()[-1] == "False"


# --- manage.py bitrix doctor ----------------------------------------------------------------------


def test_doctor_passes_a_production_configuration():
    done = manage("bitrix", "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "all checks passed"
    assert "ok   django: check --deploy is clean" in done.stdout


@pytest.mark.parametrize(
    ("env", "finding"),
    [
        ({"DJANGO_DEBUG": "1"}, "FAIL debug: DEBUG is on"),
        ({"BITRIX24_TOKEN_KEYS": ""}, "FAIL token keys: BITRIX24_TOKEN_KEYS is empty"),
        ({"BITRIX24_TOKEN_KEYS": "not-a-key"}, "BITRIX24_TOKEN_KEYS[0] is not a Fernet key"),
        ({"DJANGO_SECRET_KEY": "short"}, "FAIL secret key"),
        ({"DJANGO_ALLOWED_HOSTS": "*"}, "FAIL hosts"),
        ({"DJANGO_ALLOWED_HOSTS": "other.example.com"}, "does not include 'app.example.com'"),
        ({"BITRIX24_APP_URL": "http://app.example.com"}, "FAIL https: BITRIX24_APP_URL must be https"),
        ({"DJANGO_SECURE_SSL_REDIRECT": "0"}, "FAIL https: set DJANGO_SECURE_SSL_REDIRECT=1"),
        ({"DJANGO_SECURE_COOKIES": "0"}, "FAIL cookies"),
        ({"BITRIX24_OAUTH_SERVERS": "https://oauth.evil.example/"}, "is not Bitrix24's"),
        ({"BITRIX24_OAUTH_SERVERS": "http://oauth.bitrix.info/"}, "must use https"),
        ({"WEB_CONCURRENCY": "4"}, "FAIL redis: WEB_CONCURRENCY=4 without REDIS_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "FAIL redis: REDIS_URL does not answer"),
        ({"METRICS_ALLOWED_IPS": "0.0.0.0/0"}, "FAIL addresses: METRICS_ALLOWED_IPS includes 0.0.0.0/0"),
        ({"DJANGO_SECURE_HSTS_SECONDS": "60"}, "FAIL https: DJANGO_SECURE_HSTS_SECONDS below"),
        ({"DJANGO_SECURE_HSTS_SECONDS": "0"}, "FAIL django: check --deploy: security.W004"),
        ({"CELERY_BEAT_SCHEDULER": "celery.beat:PersistentScheduler"}, "FAIL one beat"),
    ],
)
def test_doctor_fails_on_each_unsafe_setting(env, finding):
    done = manage("bitrix", "doctor", "--quiet", **env)
    assert done.returncode == 1, done.stdout + done.stderr
    # A setting Django's system checks call an error stops the command before the doctor speaks.
    assert finding in done.stdout + done.stderr, done.stdout + done.stderr
    assert not any(line.startswith("ok ") for line in done.stdout.splitlines())  # --quiet


def test_check_deploy_is_clean_with_the_observability_settings():
    done = manage("check", "--deploy", METRICS_ALLOWED_IPS="10.0.0.0/8", TRUSTED_PROXIES="172.30.24.0/24")
    assert done.returncode == 0 and "System check identified no issues" in done.stdout, (
        done.stdout + done.stderr
    )
    # The control: the same command reports a deployment warning.
    warned = manage("check", "--deploy", DJANGO_SECURE_HSTS_SECONDS="0")
    assert "security.W004" in warned.stderr


def test_secrets_inside_the_message_text_are_hidden(json_logs):
    """urllib3's DEBUG line of an OAuth refresh prints its URL; a webhook call prints its path."""
    http = logging.getLogger("urllib3.connectionpool")
    http.setLevel(logging.DEBUG)
    try:
        http.debug(
            '%s "%s %s HTTP/1.1"', "https://oauth", "GET", "/oauth/token/?client_secret=CS1&refresh_token=RT1"
        )
        http.debug('%s "%s %s HTTP/1.1"', "https://portal", "POST", "/rest/1/WEBHOOKSECRET/profile")
    finally:
        http.setLevel(logging.NOTSET)
    plain = KeyValueFormatter("%(message)s")
    record = logging.LogRecord(
        "x", logging.INFO, "", 0, "url %s", ("/rest/api/3/V3SECRET/x?auth=AUTH1",), None
    )
    text = "\n".join(json_logs) + plain.format(record)
    for secret in ("CS1", "RT1", "WEBHOOKSECRET", "V3SECRET", "AUTH1"):
        assert secret not in text
    assert "refresh_token=[hidden]" in text and "/rest/1/[hidden]/profile" in text
