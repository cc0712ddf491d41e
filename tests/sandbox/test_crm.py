"""CRM methods with Bitrix24 list semantics: paging, order, filter operators, select, start=-1,
and list/get/add/update/delete/fields for every entity, statuses and currencies."""

from __future__ import annotations

import pytest

from tests.sandbox.helpers import hook_call


def result(response):
    body = response.json()
    assert response.status_code == 200, body
    return body["result"]


@pytest.mark.parametrize("entity", ["deal", "lead", "contact", "company"])
def test_entity_add_get_update_list_delete(sandbox, entity):
    prefix = f"crm.{entity}"
    fields = {"TITLE": "Created by test", "NAME": "Test", "UF_CRM_COLOUR": "blue"}
    new_id = result(hook_call(sandbox, f"{prefix}.add", fields=fields))
    assert isinstance(new_id, int)
    row = result(hook_call(sandbox, f"{prefix}.get", id=new_id))
    assert row["ID"] == str(new_id) and row["UF_CRM_COLOUR"] == "blue"
    assert row["CREATED_BY_ID"] == "1"
    assert result(hook_call(sandbox, f"{prefix}.update", id=new_id, fields={"COMMENTS": "changed"})) is True
    assert result(hook_call(sandbox, f"{prefix}.get", id=new_id))["COMMENTS"] == "changed"
    listed = result(hook_call(sandbox, f"{prefix}.list", filter={"ID": new_id}, select=["ID", "UF_*"]))
    assert listed == [{"ID": str(new_id), "UF_CRM_COLOUR": "blue"}]
    assert result(hook_call(sandbox, f"{prefix}.delete", id=new_id)) is True
    gone = hook_call(sandbox, f"{prefix}.get", id=new_id)
    assert gone.status_code == 400 and gone.json()["error_description"] == "Not found"
    described = result(hook_call(sandbox, f"{prefix}.fields"))
    assert described["ID"]["isReadOnly"] is True and described["ID"]["type"] == "integer"
    assert described["ASSIGNED_BY_ID"]["type"] == "user"


def test_pages_of_fifty_with_next_and_total(sandbox):
    seen = []
    start = 0
    while start is not None:
        page = hook_call(sandbox, "crm.deal.list", select=["ID"], start=start).json()
        assert page["total"] == 120
        seen += [int(r["ID"]) for r in page["result"]]
        start = page.get("next")
    assert seen == list(range(1, 121))


def test_start_minus_one_skips_the_count_for_keyset_paging(sandbox):
    page = hook_call(
        sandbox, "crm.deal.list", order={"ID": "ASC"}, filter={">ID": 100}, select=["ID"], start=-1
    ).json()
    assert [r["ID"] for r in page["result"]] == [str(i) for i in range(101, 121)]
    assert page["total"] == 0 and "next" not in page


def test_order_and_filter_operators(sandbox):
    rows = result(
        hook_call(
            sandbox,
            "crm.deal.list",
            order={"OPPORTUNITY": "DESC"},
            filter={"STAGE_ID": ["WON", "LOSE"]},
            select=["ID", "OPPORTUNITY", "STAGE_ID"],
        )
    )
    assert rows and all(r["STAGE_ID"] in ("WON", "LOSE") for r in rows)
    amounts = [float(r["OPPORTUNITY"]) for r in rows]
    assert amounts == sorted(amounts, reverse=True)
    not_new = result(
        hook_call(sandbox, "crm.deal.list", filter={"!STAGE_ID": "NEW", "<=ID": 30}, select=["STAGE_ID"])
    )
    assert not_new and all(r["STAGE_ID"] != "NEW" for r in not_new)
    like = result(hook_call(sandbox, "crm.deal.list", filter={"%TITLE": "AUDIT"}, select=["TITLE"]))
    assert like and all("audit" in r["TITLE"] for r in like)
    rich = result(
        hook_call(sandbox, "crm.deal.list", filter={">=OPPORTUNITY": 40000}, select=["OPPORTUNITY"])
    )
    assert all(float(r["OPPORTUNITY"]) >= 40000 for r in rich)
    in_ids = result(hook_call(sandbox, "crm.deal.list", filter={"@ID": [3, 5, 7]}, select=["ID"]))
    assert [r["ID"] for r in in_ids] == ["3", "5", "7"]


def test_select_star_gives_standard_fields_and_default_select_omits_user_fields(sandbox):
    new_id = result(hook_call(sandbox, "crm.deal.add", fields={"TITLE": "x", "UF_CRM_X": "1"}))
    default = result(hook_call(sandbox, "crm.deal.list", filter={"ID": new_id}))[0]
    star = result(hook_call(sandbox, "crm.deal.list", filter={"ID": new_id}, select=["*", "UF_*"]))[0]
    assert "UF_CRM_X" not in default and "STAGE_ID" in default
    assert star["UF_CRM_X"] == "1" and "STAGE_ID" in star


def test_bad_filter_is_a_400_with_empty_code(sandbox):
    answer = hook_call(sandbox, "crm.deal.list", filter="ID=1")
    assert answer.status_code == 400 and answer.json() == {
        "error": "",
        "error_description": "Parameter 'filter' must be array.",
    }


def test_statuses_as_shipped_and_editable(sandbox):
    stages = result(hook_call(sandbox, "crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE"}))
    assert [s["STATUS_ID"] for s in stages][:2] == ["NEW", "PREPARATION"]
    assert {"WON", "LOSE"} <= {s["STATUS_ID"] for s in stages}
    new_id = result(
        hook_call(
            sandbox,
            "crm.status.add",
            fields={"ENTITY_ID": "SOURCE", "STATUS_ID": "PODCAST", "NAME": "Podcast"},
        )
    )
    assert result(hook_call(sandbox, "crm.status.get", id=new_id))["NAME"] == "Podcast"
    assert result(hook_call(sandbox, "crm.status.update", id=new_id, fields={"NAME": "Pod"})) is True
    items = result(hook_call(sandbox, "crm.status.entity.items", entityId="SOURCE"))
    assert "Pod" in [i["NAME"] for i in items]
    assert result(hook_call(sandbox, "crm.status.delete", id=new_id)) is True
    system = stages[0]["ID"]
    assert hook_call(sandbox, "crm.status.delete", id=system).status_code == 400


def test_currencies_as_shipped_and_editable(sandbox):
    currencies = result(hook_call(sandbox, "crm.currency.list"))
    assert {"USD", "EUR"} <= {c["CURRENCY"] for c in currencies}
    assert result(hook_call(sandbox, "crm.currency.base.get")) == "USD"
    assert result(hook_call(sandbox, "crm.currency.add", fields={"CURRENCY": "CHF", "AMOUNT": 1.1})) == "CHF"
    assert result(hook_call(sandbox, "crm.currency.get", id="CHF"))["AMOUNT"] == "1.1000"
    assert result(hook_call(sandbox, "crm.currency.update", id="CHF", fields={"AMOUNT": 1.2})) is True
    assert result(hook_call(sandbox, "crm.currency.delete", id="CHF")) is True
    assert hook_call(sandbox, "crm.currency.delete", id="USD").status_code == 400
    assert "CURRENCY" in result(hook_call(sandbox, "crm.currency.fields"))


def test_writes_are_counted_per_method(sandbox):
    hook_call(sandbox, "crm.lead.add", fields={"TITLE": "a"})
    hook_call(sandbox, "crm.lead.add", fields={"TITLE": "b"})
    hook_call(sandbox, "crm.lead.update", id=1, fields={"TITLE": "c"})
    writes = sandbox.counters()["writes"][sandbox.portal(1)["member_id"]]
    assert writes == {"crm.lead.add": 2, "crm.lead.update": 1}
