"""batch: cmd map or list, halt, 50 at most, $result back-references and the result sections."""

from __future__ import annotations

from tests.sandbox.helpers import hook_call


def test_cmd_map_with_back_references_and_all_sections(sandbox):
    answer = hook_call(
        sandbox,
        "batch",
        halt=0,
        cmd={
            "first": "crm.deal.list?select[]=ID&select[]=CONTACT_ID&order[ID]=ASC",
            "contact": "crm.contact.get?id=$result[first][0][CONTACT_ID]",
            "missing": "crm.deal.get?id=99999",
            "last": "crm.deal.get?id=$result[first][49][ID]",
        },
    )
    assert answer.status_code == 200
    body = answer.json()["result"]
    first_contact = body["result"]["first"][0]["CONTACT_ID"]
    assert body["result"]["contact"]["ID"] == first_contact
    assert body["result"]["last"]["ID"] == "50"
    assert body["result_error"] == {"missing": {"error": "", "error_description": "Not found"}}
    assert body["result_total"] == {"first": 120}
    assert body["result_next"] == {"first": 50}
    assert set(body["result_time"]) == {"first", "contact", "last"}
    assert "operating" in body["result_time"]["first"]


def test_cmd_list_gives_list_sections_and_empty_ones_are_arrays(sandbox):
    body = hook_call(sandbox, "batch", cmd=["crm.deal.get?id=1", "crm.deal.get?id=2"]).json()["result"]
    assert [r["ID"] for r in body["result"]] == ["1", "2"]
    assert body["result_error"] == [] and body["result_total"] == [] and body["result_next"] == []


def test_halt_stops_at_the_first_error(sandbox):
    cmd = {"a": "crm.deal.get?id=1", "b": "crm.deal.get?id=99999", "c": "crm.deal.add?fields[TITLE]=never"}
    halted = hook_call(sandbox, "batch", halt=1, cmd=cmd).json()["result"]
    assert set(halted["result"]) == {"a"} and set(halted["result_error"]) == {"b"}
    assert hook_call(sandbox, "crm.deal.list", filter={"TITLE": "never"}).json()["result"] == []
    carried_on = hook_call(sandbox, "batch", halt=0, cmd=cmd).json()["result"]
    assert set(carried_on["result"]) == {"a", "c"}


def test_more_than_fifty_commands_is_refused(sandbox):
    answer = hook_call(sandbox, "batch", cmd={f"k{i}": "server.time" for i in range(51)})
    assert answer.status_code == 400 and answer.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"


def test_nested_batch_and_unknown_methods_fail_per_command(sandbox):
    body = hook_call(sandbox, "batch", cmd={"n": "batch?cmd[x]=server.time", "u": "no.such"}).json()["result"]
    assert body["result_error"]["n"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert body["result_error"]["u"]["error"] == "ERROR_METHOD_NOT_FOUND"


def test_batch_sent_as_a_form_is_decoded_once_more(sandbox):
    import requests

    url = sandbox.portal(1)["webhook_url"] + "batch"
    form = {"cmd[a]": "crm.deal.list?filter[>ID]=118&select[]=ID", "halt": "0"}
    body = requests.post(url, data=form, verify=sandbox.ca_bundle).json()["result"]
    assert [r["ID"] for r in body["result"]["a"]] == ["119", "120"]
