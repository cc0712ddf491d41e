#!/usr/bin/env bash
# The scheduler. Run EXACTLY ONE per deployment: two beats would queue every periodic task twice.
# Without REDIS_URL (single-process mode) there is no broker to send to, so the periodic tasks
# run in this process instead (manage.py run_periodic).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ -z "${REDIS_URL:-}" ]; then
  exec "$PY" manage.py run_periodic
fi
mkdir -p var
exec "$PY" -m celery -A bitrix_app beat \
  --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
  --schedule "${CELERY_BEAT_SCHEDULE_FILE:-var/celerybeat-schedule}"
