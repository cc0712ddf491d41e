"""Single-process stand-in for celery beat (no REDIS_URL, so no broker to send to).

Runs every entry of CELERY_BEAT_SCHEDULE in this process when it falls due, using the same
schedule objects celery beat would. In production (REDIS_URL set) deploy/beat.sh runs the real
celery beat instead, and this command refuses to start so two schedulers never run at once.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from celery.schedules import BaseSchedule
from celery.schedules import schedule as celery_schedule
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bitrix_app.celery import app as celery_app

logger = logging.getLogger(__name__)


def _as_schedule(value: object) -> BaseSchedule:
    if isinstance(value, BaseSchedule):  # schedule, crontab, solar
        return value
    if isinstance(value, timedelta):
        return celery_schedule(run_every=value)
    return celery_schedule(run_every=timedelta(seconds=float(value)))  # type: ignore[arg-type]


class Command(BaseCommand):
    help = "Run the periodic tasks in this process (single-process mode, without Redis)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run every task once and exit.")

    def handle(self, *args, once: bool = False, **options):
        if settings.REDIS_URL and not once:
            raise CommandError("REDIS_URL is set: run celery beat (deploy/beat.sh) instead.")
        # A worker imports the tasks modules at start; this process must do the same.
        celery_app.loader.import_default_modules()
        entries = {
            name: dict(entry, schedule=_as_schedule(entry["schedule"]))
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        }
        last_run: dict[str, datetime] = {}
        self.stdout.write(f"run_periodic: {len(entries)} periodic tasks: {', '.join(entries) or 'none'}")
        while True:
            next_wake = 60.0
            for name, entry in entries.items():
                sched = entry["schedule"]
                # Like celery beat, a task first runs when its first interval has passed.
                previous = last_run.setdefault(name, sched.now())
                due, wait = sched.is_due(previous)
                if due or once:
                    last_run[name] = sched.now()
                    self._run(entry)
                next_wake = min(next_wake, max(float(wait), 1.0))
            if once:
                return
            time.sleep(next_wake)

    def _run(self, entry: dict) -> None:
        try:
            celery_app.tasks[entry["task"]].apply(args=entry.get("args", ()), kwargs=entry.get("kwargs", {}))
        except Exception:
            logger.exception("periodic.failed", extra={"task": entry["task"]})
