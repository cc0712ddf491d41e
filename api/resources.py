"""What each /api/v1/portals/{member_id}/<resource> reads: its table, output shape, filters, orders.

One table of resources over mirror.entities; the views are built from it (api.views).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from mirror.entities import ENTITIES, Entity

from .schemas import CompanyOut, ContactOut, CurrencyOut, DealOut, LeadOut, StatusOut, UserOut

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_PAGE = 1_000_000
MAX_ID = 2**63 - 1
# Bitrix24's codes (stages, statuses, reference lists): letters, digits and a few separators.
CODE_PATTERN = r"^[A-Za-z0-9_:.\-]{1,64}$"


# Filter moments are clamped to these (every stored date lies between them): any date-time the
# schema allows is accepted, and none overflows when moved to UTC or into a database column.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _moment(value: datetime) -> datetime:
    """A filter moment in UTC: naive counts as UTC; clamped to EARLIEST..LATEST."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value.year < EARLIEST.year + 1:
        return max(EARLIEST, value.astimezone(UTC)) if value.year >= EARLIEST.year else EARLIEST
    if value.year > LATEST.year - 1:
        return LATEST
    return value.astimezone(UTC)


Moment = Annotated[datetime, AfterValidator(_moment)]


@dataclass(frozen=True)
class Resource:
    """``columns``: output field → model column; ``filters``: query parameter → lookup."""

    entity: Entity
    out: type[BaseModel]
    columns: dict[str, str]
    orders: tuple[str, ...]
    filters: dict[str, str] = field(default_factory=dict)
    filter_types: dict[str, Any] = field(default_factory=dict)
    key: str = "id"  # the detail path's parameter: the Bitrix24 id, or a currency's code

    @property
    def plural(self) -> str:
        return self.entity.plural

    def query_model(self) -> type[BaseModel]:
        """The list's query parameters, as one pydantic model (ninja reads it from the query)."""
        order = Literal[tuple([*self.orders, *(f"-{o}" for o in self.orders)])]  # type: ignore[valid-type]
        specs: dict[str, Any] = {
            "page": (int, Field(1, ge=1, le=MAX_PAGE, description="1-based page (with limit)")),
            "limit": (
                int,
                Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"rows per page, at most {MAX_LIMIT}"),
            ),
            "after": (
                int | None,
                Field(
                    None,
                    ge=0,
                    le=MAX_ID,
                    description="cursor: rows with an id above this one; in id order, page after "
                    "page by next_after, exact while data changes",
                ),
            ),
            "order": (order, Field("id", description="a column, '-' for descending; ties by id")),
            **{
                name: (kind, Field(None, description=f"filter on {self.filters[name]}"))
                for name, kind in self.filter_types.items()
            },
        }
        return create_model(
            f"{self.entity.name.capitalize()}Query", __config__=ConfigDict(extra="ignore"), **specs
        )

    def page_model(self) -> type[BaseModel]:
        return create_model(
            f"{self.entity.name.capitalize()}Page",
            items=(list[self.out], ...),  # type: ignore[name-defined]
            page=(int, ...),
            limit=(int, ...),
            total=(int, Field(..., description="rows matching the filters")),
            pages=(int, ...),
            next_after=(int | None, Field(None, description="the cursor for the next rows (with after)")),
        )


_CRM_COLUMNS = {
    "id": "bitrix_id",
    "assigned_by_id": "assigned_by_id",
    "date_create": "date_create",
    "date_modify": "date_modify",
}
_CRM_FILTERS = {"modified_since": "date_modify__gte", "assigned": "assigned_by_id"}
_CRM_FILTER_TYPES: dict[str, Any] = {
    "modified_since": Moment | None,
    "assigned": Annotated[int, Field(ge=0, le=MAX_ID)] | None,
}
_STAGE = Annotated[str, Field(pattern=CODE_PATTERN)] | None
_CRM_ORDERS = ("id", "date_modify", "date_create")


def _columns(*names: str) -> dict[str, str]:
    return {name: name for name in names}


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource(
            ENTITIES["deal"],
            DealOut,
            {
                **_CRM_COLUMNS,
                **_columns(
                    "title",
                    "stage_id",
                    "category_id",
                    "opportunity",
                    "currency_id",
                    "company_id",
                    "contact_id",
                    "closed",
                ),
            },
            (*_CRM_ORDERS, "opportunity"),
            {**_CRM_FILTERS, "stage": "stage_id"},
            {**_CRM_FILTER_TYPES, "stage": _STAGE},
        ),
        Resource(
            ENTITIES["lead"],
            LeadOut,
            {
                **_CRM_COLUMNS,
                **_columns("title", "status_id", "name", "last_name", "opportunity", "currency_id"),
            },
            (*_CRM_ORDERS, "opportunity"),
            {**_CRM_FILTERS, "stage": "status_id"},
            {**_CRM_FILTER_TYPES, "stage": _STAGE},
        ),
        Resource(
            ENTITIES["contact"],
            ContactOut,
            {**_CRM_COLUMNS, **_columns("name", "last_name", "type_id", "company_id")},
            _CRM_ORDERS,
            dict(_CRM_FILTERS),
            dict(_CRM_FILTER_TYPES),
        ),
        Resource(
            ENTITIES["company"],
            CompanyOut,
            {**_CRM_COLUMNS, **_columns("title", "company_type", "industry", "revenue", "currency_id")},
            _CRM_ORDERS,
            dict(_CRM_FILTERS),
            dict(_CRM_FILTER_TYPES),
        ),
        Resource(
            ENTITIES["user"],
            UserOut,
            {"id": "bitrix_id", **_columns("active", "name", "last_name", "email", "work_position")},
            ("id", "last_name"),
            {"active": "active"},
            {"active": bool | None},
        ),
        Resource(
            ENTITIES["status"],
            StatusOut,
            {"id": "bitrix_id", **_columns("entity_id", "status_id", "name", "sort")},
            ("id", "sort"),
            {"entity_id": "entity_id"},
            {"entity_id": _STAGE},
        ),
        Resource(
            ENTITIES["currency"],
            CurrencyOut,
            _columns("code", "base", "amount", "amount_cnt", "sort"),
            ("id", "sort"),
            key="code",
        ),
    )
}
ORDER_COLUMNS = {"id": "bitrix_id"}
