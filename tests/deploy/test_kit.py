"""The rest of deploy/, checked statically (no container runtime in CI): the compose file against the
start scripts and the settings, the image's Dockerfile, and the systemd units with systemd-analyze."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import DEPLOY, ROOT

SCRIPTS = {"web": "deploy/web.sh", "worker": "deploy/worker.sh", "beat": "deploy/beat.sh"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_runs_every_process_from_its_start_script(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat", "nginx"}
    for name, script in SCRIPTS.items():
        assert services[name]["command"] == [script], name
        path = ROOT / script
        assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
        assert services[name]["image"] == services["web"]["image"]  # one image for all three
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_compose_has_exactly_one_beat_and_scalable_workers(compose):
    services = compose["services"]
    assert services["beat"]["deploy"]["replicas"] == 1
    worker = services["worker"]
    # Scaling needs no fixed name and no host port on the worker.
    assert "container_name" not in worker and "ports" not in worker
    assert not any("container_name" in s for s in services.values())


def test_compose_waits_for_healthy_dependencies_and_applied_migrations(compose):
    services = compose["services"]
    for name in SCRIPTS:
        needs = services[name]["depends_on"]
        assert needs["postgres"]["condition"] == "service_healthy"
        assert needs["redis"]["condition"] == "service_healthy"
        assert needs["migrate"]["condition"] == "service_completed_successfully"
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_compose_environment_matches_the_settings(compose):
    app = compose["services"]["web"]
    env = app["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["WEB_BIND"] == "0.0.0.0:8000"
    # The web's address as nginx's upstream; nginx's network as the app's trusted proxies.
    upstream = (DEPLOY / "nginx" / "bitrix24" / "upstream.conf").read_text()
    assert "server web:8000;" in upstream
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert env["TRUSTED_PROXIES"] == subnet
    # Every process of a machine shares the metrics directory the web's /metrics sums.
    for name in SCRIPTS:
        service = compose["services"][name]
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/run/bitrix24/metrics"
        assert "metrics:/run/bitrix24/metrics" in service["volumes"]
    mounts = compose["services"]["nginx"]["volumes"]
    assert "./nginx/bitrix24.conf:/etc/nginx/conf.d/default.conf:ro" in mounts
    for mount in mounts:
        assert (DEPLOY / mount.split(":")[0]).exists() or mount.startswith("./certs:"), mount


def test_the_env_example_names_only_variables_the_app_or_compose_reads(compose):
    text = (DEPLOY / "env.example").read_text()
    names = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", text, re.M))
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yaml").read_text()))
    sources = "\n".join(
        p.read_text()
        for p in [*ROOT.glob("bitrix_app/*.py"), ROOT / "portals" / "conf.py", *DEPLOY.glob("*.sh")]
    )
    unknown = {
        name
        for name in names - interpolated
        if name not in sources and not (name.startswith("BITRIX24_") and name[9:].lower() in sources)
    }
    assert unknown == set()
    assert {"POSTGRES_PASSWORD", "DJANGO_SECRET_KEY", "BITRIX24_TOKEN_KEYS"} <= names


def test_the_image_is_multi_stage_slim_and_not_root():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", dockerfile, re.M)
    assert [name for _, name in stages] == ["build", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim", dockerfile, re.M)
    assert "COPY --from=build /opt/venv /opt/venv" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # The checkout goes in whole, minus what Dockerfile.dockerignore keeps out: development code,
    # local state and secrets, never the code the settings load or the start scripts.
    assert re.search(r"^COPY \. \./$", dockerfile, re.M)
    ignored = {
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"sandbox", "tests", ".venv", "var", ".env", "deploy/.env", "deploy/certs"} <= ignored
    for needed in ("bitrix_app", "portals", "events", "templates", "manage.py", "deploy", "pyproject.toml"):
        assert not any(needed == entry or needed.startswith(entry + "/") for entry in ignored), needed


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not available")
def test_systemd_units_verify(tmp_path):
    """The units as shipped, with the install prefix pointed at this checkout so ExecStart exists."""
    python = Path(sys.executable)
    venv = python.parent.parent
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("bitrix24*.[st]*")):
        if unit.suffix not in (".service", ".target"):
            continue
        text = (
            unit.read_text().replace("/opt/bitrix24/app", str(ROOT)).replace("/opt/bitrix24/venv", str(venv))
        )
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    assert len(units) == 5
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning"}
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # The control: a unit whose command is missing fails the same check.
    broken = tmp_path / "bitrix24-beat.service"
    broken.write_text(
        broken.read_text().replace(str(ROOT / "deploy" / "beat.sh"), str(tmp_path / "missing.sh"))
    )
    failed = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert failed.returncode != 0 and "missing.sh" in failed.stderr


def test_exactly_one_beat_unit_and_a_worker_template():
    names = {p.name for p in (DEPLOY / "systemd").iterdir()}
    assert "bitrix24-worker@.service" in names and "bitrix24-beat.service" in names
    beat = (DEPLOY / "systemd" / "bitrix24-beat.service").read_text()
    assert "ExecStart=/opt/bitrix24/app/deploy/beat.sh" in beat and "EXACTLY ONE" in beat


def test_queues_by_kind_route_events_and_refreshes_apart():
    from tests.test_security_settings import manage

    script = (
        "from bitrix_app.celery import app; r = app.amqp.router.route;"
        "print([r({}, n)['queue'].name for n in ('events.tasks.events_drain',"
        " 'portals.tasks.portal_tokens_refresh_task', 'portals.tasks.portals_data_purge')])"
    )
    split = manage("shell", "-c", script, CELERY_QUEUES_BY_KIND="1", CELERY_QUEUE="q")
    assert split.stdout.splitlines()[-1] == "['q.events', 'q.refresh', 'q']", split.stderr
    one = manage("shell", "-c", script, CELERY_QUEUE="q")
    assert one.stdout.splitlines()[-1] == "['q', 'q', 'q']", one.stderr
