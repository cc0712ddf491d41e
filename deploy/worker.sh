#!/usr/bin/env bash
# A Celery worker. Run as many as the load needs; they share work through Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m celery -A bitrix_app worker \
  --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
  --queues "${CELERY_QUEUE:-bitrix24}" \
  --concurrency "${CELERY_CONCURRENCY:-4}" \
  --without-gossip --without-mingle
