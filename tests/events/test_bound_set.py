"""What the app binds: its lifecycle events plus what installed features handle, not a list in settings."""

from __future__ import annotations

import pytest

from events import registry
from events.services.binding import LIFECYCLE_BINDINGS, Binding, app_events_desired, events_handler_url
from examples.deals import event_handlers as deal_handlers
from portals.models import Portal

FEATURE_EVENTS = {"ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE"}


def _online(bindings: set[Binding]) -> set[str]:
    return {b.event for b in bindings if not b.offline}


@pytest.fixture
def without_features():
    """The registry as a deployment without feature apps has it: only the events app's handlers."""
    removed = [
        (name, handler)
        for name in registry.handled_events()
        for handler in registry.handlers_for(name)
        if not handler.__module__.startswith("events.")
    ]
    for name, handler in removed:
        registry.unregister(name, handler)
    yield
    for name, handler in removed:
        registry.on_event(name)(handler)


def test_lifecycle_and_feature_events_are_bound_online():
    desired = app_events_desired(portal=Portal(offline_events=False))
    assert _online(desired) == set(LIFECYCLE_BINDINGS) | (registry.handled_events() - {"ONOFFLINEEVENT"})
    assert FEATURE_EVENTS <= _online(desired)  # the example feature's, installed in the tests
    assert "ONAPPPAYMENT" in _online(desired)
    assert all(b.handler == events_handler_url() for b in desired)


def test_without_features_only_the_lifecycle_is_bound(without_features):
    assert registry.handlers_for("ONCRMDEALADD") == ()
    assert _online(app_events_desired(portal=Portal(offline_events=False))) == set(LIFECYCLE_BINDINGS)


def test_a_feature_registering_a_handler_gets_its_event_bound(without_features):
    def on_task(*, portal, payload):
        pass

    registry.on_event("ONTASKADD")(on_task)
    try:
        assert "ONTASKADD" in _online(app_events_desired(portal=Portal(offline_events=False)))
    finally:
        registry.unregister("ONTASKADD", on_task)
    assert "ONTASKADD" not in _online(app_events_desired(portal=Portal(offline_events=False)))


def test_offline_events_replace_their_online_binding_where_the_portal_allows_them(settings, without_features):
    registry.on_event("ONCRMDEALUPDATE")(deal_handlers.deal_changed)
    settings.BITRIX24_OFFLINE_EVENTS = ["ONCRMDEALUPDATE", "ONAPPUNINSTALL", "ONCRMLEADADD"]
    desired = app_events_desired(portal=Portal(offline_events=True))
    # Handled: moved to the offline queue; the lifecycle always comes online; unhandled: never bound.
    assert {b.event for b in desired if b.offline} == {"ONCRMDEALUPDATE"}
    assert "ONCRMDEALUPDATE" not in _online(desired)
    assert {"ONAPPUNINSTALL", "ONOFFLINEEVENT"} <= _online(desired)
    assert "ONCRMLEADADD" not in {b.event for b in desired}
    # A portal that doesn't allow offline events gets everything online.
    assert {b.event for b in app_events_desired(portal=Portal(offline_events=False)) if b.offline} == set()


def test_the_example_feature_is_its_own_app():
    assert deal_handlers.deal_changed in registry.handlers_for("ONCRMDEALUPDATE")
    assert not any(
        getattr(h, "__module__", "").startswith("events.")
        for name in FEATURE_EVENTS
        for h in registry.handlers_for(name)
    )
