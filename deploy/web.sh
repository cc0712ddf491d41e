#!/usr/bin/env bash
# The web process (Django behind granian). Used by bin/demo and in production alike.
#
# granian (a Rust HTTP server running the WSGI app on a pool of Python threads) is the default
# because the event receiver's benchmark proved it (docs/events.md, Benchmark): gunicorn's Python
# HTTP handling cost more CPU per request than the receiver's whole forged-event path.
# WEB_SERVER=gunicorn serves the same entry point with gunicorn (gthread) instead.
#
# Environment: WEB_BIND (host:port or unix:/path), WEB_CONCURRENCY (processes; default 2, or 1 in
# single-process mode, whose cache, rate limiter and inline tasks live in one process), WEB_THREADS
# (threads per process), WEB_TIMEOUT (gunicorn only), FORWARDED_ALLOW_IPS (gunicorn only; Django
# reads X-Forwarded-Proto itself through SECURE_PROXY_SSL_HEADER).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
# prometheus-client writes each process's counters into this directory (docs/deploy.md, Metrics).
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then mkdir -p "$PROMETHEUS_MULTIPROC_DIR"; fi
BIND="${WEB_BIND:-127.0.0.1:8000}"
if [ -n "${REDIS_URL:-}" ]; then WORKERS="${WEB_CONCURRENCY:-2}"; else WORKERS="${WEB_CONCURRENCY:-1}"; fi
# bitrix_app.wsgi serves the whole site; the event receiver and the API get a leaner middleware lane.
APP=bitrix_app.wsgi:application

if [ "${WEB_SERVER:-granian}" = "gunicorn" ]; then
  exec "$PY" -m gunicorn "$APP" \
    --bind "$BIND" \
    --workers "$WORKERS" \
    --threads "${WEB_THREADS:-4}" \
    --timeout "${WEB_TIMEOUT:-30}" \
    --access-logfile - \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
fi

if [[ "$BIND" == unix:* ]]; then
  LISTEN=(--uds "${BIND#unix:}")
else
  LISTEN=(--host "${BIND%:*}" --port "${BIND##*:}")
fi
exec "$PY" -m granian --interface wsgi "$APP" \
  "${LISTEN[@]}" \
  --workers "$WORKERS" \
  --blocking-threads "${WEB_THREADS:-4}" \
  --http 1 --no-ws \
  --respawn-failed-workers \
  --access-log
