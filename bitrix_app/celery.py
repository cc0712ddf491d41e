import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

from bitrix_app.logs import scope_enter, scope_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrix_app.settings")

app = Celery("bitrix_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Every line a task logs carries its task id as the request_id (grep one run of a task across lines).
@task_prerun.connect(dispatch_uid="bitrix_app.log_scope_enter")
def _log_scope_enter(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is not None:
        task.request.log_scope = scope_enter(request_id=task_id)


@task_postrun.connect(dispatch_uid="bitrix_app.log_scope_exit")
def _log_scope_exit(task: Any = None, **_: Any) -> None:
    token = getattr(task.request, "log_scope", None) if task is not None else None
    if token is not None:
        task.request.log_scope = None
        scope_exit(token)
