"""The API's shapes (pydantic v2): what each resource answers, and the error body.

Money is a decimal string ("1200.50"), dates ISO 8601 with their offset, ``fields`` every other
field of the object as the typed layer writes it (portals.bitrix.crm.Record.as_json).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: bad_request, unauthorized, forbidden, not_found, …")
    message: str
    fields: dict[str, list[str]] | None = Field(None, description="what was wrong with which parameter")


class ErrorBody(BaseModel):
    error: ErrorDetail


class CrmOut(BaseModel):
    id: int
    assigned_by_id: int | None = None
    date_create: datetime | None = None
    date_modify: datetime | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class DealOut(CrmOut):
    title: str
    stage_id: str
    category_id: int | None = None
    opportunity: Decimal | None = None
    currency_id: str
    company_id: int | None = None
    contact_id: int | None = None
    closed: bool | None = None


class LeadOut(CrmOut):
    title: str
    status_id: str
    name: str
    last_name: str
    opportunity: Decimal | None = None
    currency_id: str


class ContactOut(CrmOut):
    name: str
    last_name: str
    type_id: str
    company_id: int | None = None


class CompanyOut(CrmOut):
    title: str
    company_type: str
    industry: str
    revenue: Decimal | None = None
    currency_id: str


class UserOut(BaseModel):
    id: int
    active: bool | None = None
    name: str
    last_name: str
    email: str
    work_position: str
    fields: dict[str, Any] = Field(default_factory=dict)


class StatusOut(BaseModel):
    id: int
    entity_id: str
    status_id: str
    name: str
    sort: int | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class CurrencyOut(BaseModel):
    code: str
    base: bool | None = None
    amount: Decimal | None = None
    amount_cnt: int | None = None
    sort: int | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class EntityMirrorOut(BaseModel):
    entity: str
    resource: str
    state: str = Field(description="new, running (initial sync), complete, failed")
    rows: int
    pending: int = Field(description="objects changed by events, waiting for their fetch")
    completed_at: datetime | None = None
    reconciled_at: datetime | None = None


class PortalOut(BaseModel):
    member_id: str
    domain: str
    state: str
    mirror: list[EntityMirrorOut]
