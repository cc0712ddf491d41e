"""`manage.py bitrix call --v3` against the sandbox."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.client import test_cli

pytestmark = pytest.mark.django_db

# The CLI suite's fixture (the sandbox's CA trusted) and runner.
cli_env = test_cli.cli_env
run = test_cli.run


def test_call_v3_writes_and_reads_tasks(cli_env) -> None:
    hook = ("--webhook", cli_env.webhook_url)
    fields = 'fields=json:{"title": "From the shell", "creatorId": 1, "responsibleId": 1}'
    out, _ = run("call", "tasks.task.add", fields, "--v3", "--idempotency-key", "shell-1", *hook)
    item = json.loads(out)["item"]
    assert item["title"] == "From the shell"
    again, _ = run("call", "tasks.task.add", fields, "--v3", "--idempotency-key", "shell-1", "--raw", *hook)
    assert json.loads(again)["result"]["item"]["id"] == item["id"]  # replayed, not a second task
    listed, _ = run("call", "tasks.task.list", "select[]=title", "--v3", "--raw", *hook)
    envelope = json.loads(listed)
    assert envelope["result"]["items"] == [{"title": "From the shell"}] and "operating" in envelope["time"]


def test_call_v3_prints_the_openapi_document(cli_env) -> None:
    out, _ = run("call", "rest.documentation.openapi", "--v3", "--webhook", cli_env.webhook_url)
    assert json.loads(out)["openapi"] == "3.0.0"


def test_call_v3_reports_errors_with_their_code(cli_env) -> None:
    err = StringIO()
    with pytest.raises(CommandError):
        call_command(
            "bitrix",
            "call",
            "tasks.task.get",
            "id=1",  # a string: 3.0 wants an integer
            "--v3",
            "--webhook",
            cli_env.webhook_url,
            stdout=StringIO(),
            stderr=err,
        )
    assert "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION" in err.getvalue()
