#!/usr/bin/env bash
# A Celery worker. Run as many as the load needs; they share work through Redis.
# CELERY_WORKER_QUEUES (comma-separated) picks the queues this worker takes, e.g. "bitrix24.events"
# with CELERY_QUEUES_BY_KIND=1 (docs/deploy.md); default: the one queue, CELERY_QUEUE.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
# prometheus-client writes each process's counters into this directory (docs/deploy.md, Metrics).
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then mkdir -p "$PROMETHEUS_MULTIPROC_DIR"; fi
exec "$PY" -m celery -A bitrix_app worker \
  --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
  --queues "${CELERY_WORKER_QUEUES:-${CELERY_QUEUE:-bitrix24}}" \
  --concurrency "${CELERY_CONCURRENCY:-4}" \
  --without-gossip --without-mingle
