"""The portal store: one owner of a portal's lifecycle fields, one transition table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.utils import timezone

from portals.bitrix.exceptions import Bitrix24InvalidGrant, Bitrix24PaymentRequired, Bitrix24PortalUnavailable
from portals.models import Portal
from portals.services.store import TRANSITIONS, Cause, portal_locked, portal_refusal_record

from .helpers import make_portal

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE_FIELDS = {
    "state", "state_reason", "state_changed_at", "installed_at", "uninstalled_at", "data_delete_after",
    "access_token", "refresh_token", "expires_at", "refresh_token_issued_at", "last_refreshed_at",
    "application_token", "domain", "client_endpoint", "disabled_at",
}  # fmt: skip
STORE = ROOT / "portals" / "services" / "store.py"


def writes_of_lifecycle_fields(path: Path) -> list[str]:
    """``x.<field> = …`` (any x but self) and ``….update(<field>=…)`` in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [
                t
                for target in node.targets
                for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in LIFECYCLE_FIELDS:
                if not (isinstance(target.value, ast.Name) and target.value.id == "self"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{target.attr} =")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update":
            for keyword in node.keywords:
                if keyword.arg in LIFECYCLE_FIELDS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} update({keyword.arg}=…)")
    return found


def test_only_the_store_writes_a_portals_lifecycle_fields():
    modules = [
        path
        for package in ("portals", "events", "bitrix_app")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != STORE
        and "migrations" not in path.parts
        and "bitrix" not in path.relative_to(ROOT).parts[1:2]
    ]
    assert len(modules) > 30  # the scan really covers the app
    assert writes_of_lifecycle_fields(STORE)  # and would see a write where there is one
    offenders = [line for path in modules for line in writes_of_lifecycle_fields(path)]
    assert offenders == []


def test_the_transition_table_covers_every_cause_and_never_revives_an_uninstalled_portal_by_itself():
    assert set(TRANSITIONS) == set(Cause)
    revive = {
        cause
        for cause, row in TRANSITIONS.items()
        if row.get(Portal.State.UNINSTALLED) not in (None, Portal.State.UNINSTALLED)
    }
    # Only an administrator's verified install or re-authorisation brings an uninstalled portal back.
    assert revive == {Cause.INSTALLED, Cause.INSTALLED_UNPAID, Cause.REAUTHORISED}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "state"),
    [
        (Bitrix24InvalidGrant("invalid_grant", "spent"), Portal.State.REAUTH_REQUIRED),
        (Bitrix24PaymentRequired("PAYMENT_REQUIRED", "pay"), Portal.State.PAYMENT_REQUIRED),
        (Bitrix24PortalUnavailable("NOT_INSTALLED", "gone"), Portal.State.UNINSTALLED),
    ],
)
def test_a_refusal_moves_an_active_portal_and_never_an_uninstalled_one(error, state):
    active, gone = (
        make_portal(),
        make_portal(state=Portal.State.UNINSTALLED, access_token="", refresh_token=""),
    )
    now = timezone.now()
    for portal in (active, gone):
        with portal_locked(portal.pk) as locked:
            portal_refusal_record(locked, error, source="refresh refused", now=now)
    active.refresh_from_db()
    assert (active.state, active.state_changed_at) == (state, now)
    assert error.code in active.state_reason
    assert (active.access_token == "") is (state == Portal.State.UNINSTALLED)
    before = gone.state_changed_at
    gone.refresh_from_db()
    assert (gone.state, gone.state_changed_at) == (Portal.State.UNINSTALLED, before)


def test_docs_print_the_transition_table_as_it_is():
    text = (ROOT / "docs" / "portals.md").read_text()
    columns = [None, *Portal.State]
    printed = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[0].strip("`") in set(Cause):
            printed[Cause(cells[0].strip("`"))] = {
                column: Portal.State(cell)
                for column, cell in zip(columns, cells[1:], strict=True)
                if cell != "—"
            }
    assert printed == TRANSITIONS
