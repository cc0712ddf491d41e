"""Reading where the mirror stands: per portal and entity, for the CLI, the API and the console."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..entities import ENTITIES
from ..models import LIVE, Pending, SyncState


@dataclass(frozen=True)
class EntityStatus:
    entity: str
    state: str
    rows: int  # live rows in the mirror
    synced: int  # rows the current or last initial sync stored
    pending: int  # objects waiting for their fetch after an event
    started_at: datetime | None
    completed_at: datetime | None
    reconciled_at: datetime | None
    error: str


def mirror_status(*, portal_id: int, entities: list[str] | None = None) -> list[EntityStatus]:
    """One line per entity (every entity, or ``entities``), whether synced yet or not."""
    names = entities or list(ENTITIES)
    states = {s.entity: s for s in SyncState.objects.filter(portal_id=portal_id, entity__in=names)}
    pending: dict[str, int] = {}
    for entity in Pending.objects.filter(portal_id=portal_id).values_list("entity", flat=True):
        pending[entity] = pending.get(entity, 0) + 1
    found = []
    for name in names:
        state = states.get(name)
        rows = ENTITIES[name].model._default_manager.filter(LIVE, portal_id=portal_id).count()
        found.append(
            EntityStatus(
                entity=name,
                state=state.state if state else SyncState.State.NEW.value,
                rows=rows,
                synced=state.rows if state else 0,
                pending=pending.get(name, 0),
                started_at=state.started_at if state else None,
                completed_at=state.completed_at if state else None,
                reconciled_at=state.reconciled_at if state else None,
                error=state.error if state else "",
            )
        )
    return found
