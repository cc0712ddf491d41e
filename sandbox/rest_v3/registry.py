"""REST 3.0 methods and the objects (DTOs) they speak about.

``@v3_method("tasks.task.get", scope="task", dto=TASK)`` registers a handler here only (never
in sandbox.registry: the old address must not know 3.0-only methods). A handler is the same
``def handler(call: Call)`` as an old method's and returns the ``result`` object
(``{"item": ...}``, ``{"items": [...]}``, ``{"result": true}``) or raises V3Error. The DTOs
describe each field's type and whether it may be filtered, sorted, written on create or changed
on update; queries, validation and the OpenAPI document are all read from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.registry import Handler, MethodSpec


@dataclass(frozen=True)
class Field:
    """One property of a DTO. ``relation`` names the DTO a related object field resolves to, and
    ``via`` the id field it follows (``responsible`` via ``responsibleId``)."""

    name: str
    type: str  # integer, string, datetime, boolean, enum, array, object
    filterable: bool = False
    sortable: bool = False
    creatable: bool = False
    editable: bool = False
    required: bool = False
    values: tuple[str, ...] = ()
    items: str = ""  # element type of an array
    relation: str = ""
    via: str = ""
    description: str = ""


@dataclass(frozen=True)
class Dto:
    name: str
    fields: dict[str, Field]

    def scalar_names(self) -> list[str]:
        return [f.name for f in self.fields.values() if not f.relation]


DTOS: dict[str, Dto] = {}


def dto(name: str, *fields: Field) -> Dto:
    made = Dto(name, {f.name: f for f in fields})
    DTOS[name] = made
    return made


@dataclass(frozen=True)
class V3Spec:
    """A 3.0 method: the REST layer's MethodSpec plus what its OpenAPI entry says.

    ``result`` is the success shape ("item", "items", "result" or "document"); ``parameterless``
    methods also answer GET. ``dto`` is the object the method reads or writes.
    """

    spec: MethodSpec
    result: str
    summary: str
    dto: Dto | None = None
    parameterless: bool = False
    request: dict[str, object] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()  # any one of them lets a caller in (empty: no scope needed)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def scope(self) -> str | None:
        return self.scopes[0] if self.scopes else None

    @property
    def write(self) -> bool:
        return self.spec.write


METHODS: dict[str, V3Spec] = {}
# Scopes the documentation also names for the same methods (RD api-reference/scopes/permissions.md
# lists "tasks" as a deprecated alias of "task"; the 3.0 method pages print "tasks").
SCOPE_ALIASES: dict[str, tuple[str, ...]] = {"task": ("task", "tasks")}


def v3_method(
    name: str,
    *,
    scope: str | None,
    result: str,
    summary: str,
    write: bool = False,
    dto: Dto | None = None,
    parameterless: bool = False,
    request: dict[str, object] | None = None,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        spec = MethodSpec(name=name.lower(), handler=handler, scope=scope, write=write)
        METHODS[name.lower()] = V3Spec(
            spec=spec,
            result=result,
            summary=summary,
            dto=dto,
            parameterless=parameterless,
            request=request or {},
            scopes=SCOPE_ALIASES.get(scope, (scope,)) if scope else (),
        )
        return handler

    return register


def lookup(name: str) -> V3Spec | None:
    return METHODS.get(name.lower())


def granted(spec: V3Spec, scope: frozenset[str]) -> bool:
    return not spec.scopes or any(s in scope for s in spec.scopes)
