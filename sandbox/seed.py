"""Seed data as a fresh Bitrix24 account has it, plus generated CRM rows.

Generated rows come from a pure function of (seed, portal, id), so 500,000 deals cost nothing until
they are read, and the same id always reads back the same row. Statuses and currencies are the
ones Bitrix24 ships with an English-language account.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

from sandbox.store import EntityTable, Portal, Row

FIRST_NAMES = [
    "John",
    "Anna",
    "Peter",
    "Maria",
    "Alex",
    "Olga",
    "David",
    "Sara",
    "Ivan",
    "Emma",
    "Paul",
    "Nina",
]
LAST_NAMES = ["Smith", "Ivanova", "Brown", "Garcia", "Miller", "Petrov", "Wilson", "Klein", "Novak", "Rossi"]
COMPANY_WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
]
COMPANY_SUFFIX = ["LLC", "Inc.", "GmbH", "Ltd", "Group", "Partners"]
PRODUCTS = [
    "website",
    "CRM rollout",
    "support plan",
    "licences",
    "consulting",
    "hardware",
    "training",
    "audit",
]
DEPARTMENTS = [
    (1, "Company", None),
    (2, "Sales", 1),
    (3, "Marketing", 1),
    (4, "Support", 1),
    (5, "Development", 1),
]

# (ENTITY_ID, STATUS_ID, NAME, SORT, SEMANTICS) — the default sets of an English account.
STATUSES: list[tuple[str, str, str, int, str | None]] = [
    ("STATUS", "NEW", "Unassigned", 10, None),
    ("STATUS", "IN_PROCESS", "In progress", 20, None),
    ("STATUS", "PROCESSED", "Processed", 30, None),
    ("STATUS", "JUNK", "Junk lead", 40, "F"),
    ("STATUS", "CONVERTED", "Good lead", 50, "S"),
    ("DEAL_STAGE", "NEW", "New", 10, None),
    ("DEAL_STAGE", "PREPARATION", "Prepare documents", 20, None),
    ("DEAL_STAGE", "PREPAYMENT_INVOICE", "Invoice", 30, None),
    ("DEAL_STAGE", "EXECUTING", "In progress", 40, None),
    ("DEAL_STAGE", "FINAL_INVOICE", "Final invoice", 50, None),
    ("DEAL_STAGE", "WON", "Deal won", 60, "S"),
    ("DEAL_STAGE", "LOSE", "Deal lost", 70, "F"),
    ("DEAL_STAGE", "APOLOGY", "Analyze failure", 80, "F"),
    ("SOURCE", "CALL", "Call", 10, None),
    ("SOURCE", "EMAIL", "E-Mail", 20, None),
    ("SOURCE", "WEB", "Website", 30, None),
    ("SOURCE", "ADVERTISING", "Advertising", 40, None),
    ("SOURCE", "PARTNER", "Existing client", 50, None),
    ("SOURCE", "RECOMMENDATION", "By recommendation", 60, None),
    ("SOURCE", "TRADE_SHOW", "Show/Exhibition", 70, None),
    ("SOURCE", "WEBFORM", "CRM form", 80, None),
    ("SOURCE", "CALLBACK", "Callback", 90, None),
    ("SOURCE", "OTHER", "Other", 100, None),
    ("CONTACT_TYPE", "CLIENT", "Clients", 10, None),
    ("CONTACT_TYPE", "SUPPLIER", "Suppliers", 20, None),
    ("CONTACT_TYPE", "PARTNER", "Partners", 30, None),
    ("CONTACT_TYPE", "OTHER", "Other", 40, None),
    ("COMPANY_TYPE", "CUSTOMER", "Client", 10, None),
    ("COMPANY_TYPE", "SUPPLIER", "Supplier", 20, None),
    ("COMPANY_TYPE", "COMPETITOR", "Competitor", 30, None),
    ("COMPANY_TYPE", "PARTNER", "Partner", 40, None),
    ("COMPANY_TYPE", "OTHER", "Other", 50, None),
    ("DEAL_TYPE", "SALE", "Sales", 10, None),
    ("DEAL_TYPE", "COMPLEX", "Complex sale", 20, None),
    ("DEAL_TYPE", "GOODS", "Sale of goods", 30, None),
    ("DEAL_TYPE", "SERVICES", "Sale of services", 40, None),
    ("DEAL_TYPE", "SERVICE", "After-sales service", 50, None),
    ("INDUSTRY", "IT", "Information Technology", 10, None),
    ("INDUSTRY", "TELECOM", "Telecommunication", 20, None),
    ("INDUSTRY", "MANUFACTURING", "Manufacturing", 30, None),
    ("INDUSTRY", "BANKING", "Banking Services", 40, None),
    ("INDUSTRY", "CONSULTING", "Consulting", 50, None),
    ("INDUSTRY", "FINANCE", "Finance", 60, None),
    ("INDUSTRY", "GOVERNMENT", "Government", 70, None),
    ("INDUSTRY", "DELIVERY", "Delivery", 80, None),
    ("INDUSTRY", "ENTERTAINMENT", "Entertainment", 90, None),
    ("INDUSTRY", "NOTPROFIT", "Non-profit", 100, None),
    ("INDUSTRY", "OTHER", "Other", 110, None),
]

# (CURRENCY, FULL_NAME, AMOUNT, SORT, FORMAT_STRING, DECIMALS)
CURRENCIES = [
    ("USD", "US Dollar", "1.0000", 100, "$#", 2),
    ("EUR", "Euro", "1.0850", 200, "&euro;#", 2),
    ("GBP", "Pound Sterling", "1.2700", 300, "&pound;#", 2),
    ("RUB", "Russian Ruble", "0.0110", 400, "# &#8381;", 2),
    ("UAH", "Hryvnia", "0.0240", 500, "# &#8372;", 2),
    ("KZT", "Tenge", "0.0021", 600, "# &#8376;", 2),
    ("BYN", "Belarusian Ruble", "0.3050", 700, "# Br", 2),
]

DEAL_STAGES = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE"]
STAGE_SEMANTIC = {"WON": "S", "LOSE": "F", "APOLOGY": "F"}
LEAD_STATUSES = ["NEW", "IN_PROCESS", "PROCESSED", "JUNK", "CONVERTED"]
SOURCES = ["CALL", "EMAIL", "WEB", "ADVERTISING", "PARTNER", "RECOMMENDATION", "WEBFORM"]
PORTAL_TZ = timezone(timedelta(hours=3))
EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z: generated rows are spread over the following two years


def bitrix_datetime(ts: float) -> str:
    """Bitrix24's ISO-8601 date with an explicit offset (the sandbox's portals run on UTC+03:00)."""
    # Generated rows format millions of dates: the calendar part is cached per day and the
    # clock part is plain arithmetic, several times faster than datetime or strftime.
    local = int(ts) + 10800
    day, seconds = divmod(local, 86400)
    hours, rest = divmod(seconds, 3600)
    return f"{_day(day)}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}+03:00"


@functools.lru_cache(maxsize=8192)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


def _mix(seed: int, row_id: int, salt: int) -> int:
    # A cheap integer hash (splitmix-like) so each field of each row is stable and independent.
    x = (seed * 0x9E3779B97F4A7C15 + row_id * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x ^= x >> 29
    return x


def _pick(options: list[Any], seed: int, row_id: int, salt: int) -> Any:
    return options[_mix(seed, row_id, salt) % len(options)]


def deal_generator(seed: int, users: list[int], contacts: int, companies: int) -> Callable[[int], Row]:
    def make(row_id: int) -> Row:
        created = EPOCH + _mix(seed, row_id, 1) % (730 * 86400)
        modified = created + _mix(seed, row_id, 2) % (30 * 86400)
        stage = _pick(DEAL_STAGES, seed, row_id, 3)
        user = _pick(users, seed, row_id, 4)
        amount = (_mix(seed, row_id, 5) % 500_000) / 10
        return {
            "ID": str(row_id),
            "TITLE": f"Deal #{row_id}: {_pick(PRODUCTS, seed, row_id, 6)}",
            "TYPE_ID": _pick(["SALE", "COMPLEX", "GOODS", "SERVICES"], seed, row_id, 7),
            "CATEGORY_ID": "0",
            "STAGE_ID": stage,
            "STAGE_SEMANTIC_ID": STAGE_SEMANTIC.get(stage, "P"),
            "IS_NEW": "Y" if stage == "NEW" else "N",
            "IS_RECURRING": "N",
            "IS_RETURN_CUSTOMER": "N",
            "IS_REPEATED_APPROACH": "N",
            "PROBABILITY": None,
            "CURRENCY_ID": "USD",
            "OPPORTUNITY": f"{amount:.2f}",
            "IS_MANUAL_OPPORTUNITY": "N",
            "TAX_VALUE": "0.00",
            "COMPANY_ID": str(1 + _mix(seed, row_id, 8) % companies) if companies else "0",
            "CONTACT_ID": str(1 + _mix(seed, row_id, 9) % contacts) if contacts else None,
            "QUOTE_ID": None,
            "BEGINDATE": bitrix_datetime(created - created % 86400),
            "CLOSEDATE": bitrix_datetime(created - created % 86400 + 7 * 86400),
            "OPENED": "Y",
            "CLOSED": "Y" if stage in STAGE_SEMANTIC else "N",
            "COMMENTS": None,
            "ASSIGNED_BY_ID": str(user),
            "CREATED_BY_ID": str(user),
            "MODIFY_BY_ID": str(user),
            "MOVED_BY_ID": str(user),
            "DATE_CREATE": bitrix_datetime(created),
            "DATE_MODIFY": bitrix_datetime(modified),
            "MOVED_TIME": bitrix_datetime(modified),
            "SOURCE_ID": _pick(SOURCES, seed, row_id, 10),
            "SOURCE_DESCRIPTION": None,
            "LEAD_ID": None,
            "ADDITIONAL_INFO": None,
            "LOCATION_ID": None,
            "ORIGINATOR_ID": None,
            "ORIGIN_ID": None,
            "UTM_SOURCE": None,
            "UTM_MEDIUM": None,
            "UTM_CAMPAIGN": None,
            "UTM_CONTENT": None,
            "UTM_TERM": None,
            "LAST_ACTIVITY_TIME": bitrix_datetime(modified),
            "LAST_ACTIVITY_BY": str(user),
        }

    return make


def lead_generator(seed: int, users: list[int]) -> Callable[[int], Row]:
    def make(row_id: int) -> Row:
        created = EPOCH + _mix(seed, row_id, 21) % (730 * 86400)
        user = _pick(users, seed, row_id, 22)
        name, last = _pick(FIRST_NAMES, seed, row_id, 23), _pick(LAST_NAMES, seed, row_id, 24)
        status = _pick(LEAD_STATUSES, seed, row_id, 25)
        return {
            "ID": str(row_id),
            "TITLE": f"Lead #{row_id}: {name} {last}",
            "HONORIFIC": None,
            "NAME": name,
            "SECOND_NAME": None,
            "LAST_NAME": last,
            "COMPANY_TITLE": None,
            "COMPANY_ID": None,
            "CONTACT_ID": None,
            "IS_RETURN_CUSTOMER": "N",
            "BIRTHDATE": "",
            "SOURCE_ID": _pick(SOURCES, seed, row_id, 26),
            "SOURCE_DESCRIPTION": None,
            "STATUS_ID": status,
            "STATUS_DESCRIPTION": None,
            "STATUS_SEMANTIC_ID": {"JUNK": "F", "CONVERTED": "S"}.get(status, "P"),
            "POST": None,
            "COMMENTS": None,
            "CURRENCY_ID": "USD",
            "OPPORTUNITY": f"{(_mix(seed, row_id, 27) % 100_000) / 10:.2f}",
            "IS_MANUAL_OPPORTUNITY": "N",
            "HAS_PHONE": "N",
            "HAS_EMAIL": "N",
            "HAS_IMOL": "N",
            "ASSIGNED_BY_ID": str(user),
            "CREATED_BY_ID": str(user),
            "MODIFY_BY_ID": str(user),
            "DATE_CREATE": bitrix_datetime(created),
            "DATE_MODIFY": bitrix_datetime(created),
            "DATE_CLOSED": "",
            "OPENED": "Y",
            "ADDRESS": None,
        }

    return make


def contact_generator(seed: int, users: list[int], companies: int) -> Callable[[int], Row]:
    def make(row_id: int) -> Row:
        created = EPOCH + _mix(seed, row_id, 31) % (730 * 86400)
        user = _pick(users, seed, row_id, 32)
        return {
            "ID": str(row_id),
            "HONORIFIC": None,
            "NAME": _pick(FIRST_NAMES, seed, row_id, 33),
            "SECOND_NAME": None,
            "LAST_NAME": _pick(LAST_NAMES, seed, row_id, 34),
            "PHOTO": None,
            "BIRTHDATE": "",
            "TYPE_ID": _pick(["CLIENT", "SUPPLIER", "PARTNER"], seed, row_id, 35),
            "SOURCE_ID": _pick(SOURCES, seed, row_id, 36),
            "SOURCE_DESCRIPTION": None,
            "POST": None,
            "COMMENTS": None,
            "OPENED": "Y",
            "EXPORT": "Y",
            "HAS_PHONE": "N",
            "HAS_EMAIL": "N",
            "HAS_IMOL": "N",
            "ASSIGNED_BY_ID": str(user),
            "CREATED_BY_ID": str(user),
            "MODIFY_BY_ID": str(user),
            "DATE_CREATE": bitrix_datetime(created),
            "DATE_MODIFY": bitrix_datetime(created),
            "COMPANY_ID": str(1 + _mix(seed, row_id, 37) % companies) if companies else None,
            "LEAD_ID": None,
            "ADDRESS": None,
        }

    return make


def company_generator(seed: int, users: list[int]) -> Callable[[int], Row]:
    def make(row_id: int) -> Row:
        created = EPOCH + _mix(seed, row_id, 41) % (730 * 86400)
        user = _pick(users, seed, row_id, 42)
        title = f"{_pick(COMPANY_WORDS, seed, row_id, 43)} {_pick(COMPANY_SUFFIX, seed, row_id, 44)}"
        return {
            "ID": str(row_id),
            "COMPANY_TYPE": _pick(["CUSTOMER", "SUPPLIER", "PARTNER"], seed, row_id, 45),
            "TITLE": f"{title} #{row_id}",
            "LOGO": None,
            "LEAD_ID": None,
            "HAS_PHONE": "N",
            "HAS_EMAIL": "N",
            "HAS_IMOL": "N",
            "ASSIGNED_BY_ID": str(user),
            "CREATED_BY_ID": str(user),
            "MODIFY_BY_ID": str(user),
            "BANKING_DETAILS": None,
            "INDUSTRY": _pick(["IT", "TELECOM", "MANUFACTURING", "BANKING", "CONSULTING"], seed, row_id, 46),
            "REVENUE": f"{(_mix(seed, row_id, 47) % 10_000_000):.2f}",
            "CURRENCY_ID": "USD",
            "EMPLOYEES": _pick(
                ["EMPLOYEES_1", "EMPLOYEES_2", "EMPLOYEES_3", "EMPLOYEES_4"], seed, row_id, 48
            ),
            "COMMENTS": None,
            "DATE_CREATE": bitrix_datetime(created),
            "DATE_MODIFY": bitrix_datetime(created),
            "OPENED": "Y",
            "IS_MY_COMPANY": "N",
            "ADDRESS": None,
        }

    return make


def make_user(user_id: int, rng: random.Random, *, admin: bool, department: int, now: float) -> Row:
    name, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    registered = EPOCH + rng.randrange(365 * 86400)
    return {
        "ID": str(user_id),
        "XML_ID": f"{rng.randrange(10**7, 10**8)}",
        "ACTIVE": True,
        "NAME": name,
        "LAST_NAME": last,
        "SECOND_NAME": "",
        "EMAIL": f"{name.lower()}.{last.lower()}{user_id}@example.com",
        "LAST_LOGIN": bitrix_datetime(now - rng.randrange(86400 * 7)),
        "DATE_REGISTER": bitrix_datetime(registered),
        "IS_ONLINE": "N",
        "TIME_ZONE": "",
        "TIME_ZONE_OFFSET": "10800",
        "TIMESTAMP_X": bitrix_datetime(registered),
        "LAST_ACTIVITY_DATE": bitrix_datetime(now - rng.randrange(86400)),
        "PERSONAL_GENDER": "",
        "PERSONAL_BIRTHDAY": "",
        "PERSONAL_PHOTO": "",
        "PERSONAL_CITY": "",
        "PERSONAL_MOBILE": "",
        "WORK_PHONE": "",
        "WORK_POSITION": "Administrator"
        if admin
        else rng.choice(["Manager", "Sales rep", "Engineer", "Analyst"]),
        "UF_EMPLOYMENT_DATE": "",
        "UF_DEPARTMENT": [department],
        "UF_PHONE_INNER": "",
        "USER_TYPE": "employee",
        # Not a Bitrix24 field: read by the sandbox to decide admin rights, never returned.
        "IS_ADMIN": admin,
    }


def make_users(*, seed: int, users: int, admin_user_id: int, now: float) -> dict[int, Row]:
    """A staff list: the admin in the head department, the others spread over the departments."""
    rng = random.Random(seed * 7919)
    staff = {}
    for user_id in range(1, max(users, 1) + 1):
        department = 1 if user_id == 1 else 2 + (user_id % (len(DEPARTMENTS) - 1))
        staff[user_id] = make_user(
            user_id, rng, admin=user_id == admin_user_id, department=department, now=now
        )
    return staff


def seed_portal(
    portal: Portal,
    *,
    seed: int,
    deals: int,
    leads: int,
    contacts: int,
    companies: int,
    users: int,
    now: float,
    user_templates: dict[int, Row] | None = None,
) -> None:
    """Fill ``portal`` with users, departments, statuses, currencies and generated CRM rows.

    ``user_templates`` (from make_users) lets many portals share one generated staff list.
    """
    portal.departments = {
        dept_id: {
            "ID": str(dept_id),
            "NAME": name,
            "SORT": dept_id * 10,
            "PARENT": str(parent) if parent else None,
            "UF_HEAD": "1" if dept_id == 1 else None,
        }
        for dept_id, name, parent in DEPARTMENTS
    }
    templates = user_templates or make_users(
        seed=seed, users=users, admin_user_id=portal.admin_user_id, now=now
    )
    portal.users = {
        user_id: {**row, "UF_DEPARTMENT": list(row["UF_DEPARTMENT"])} for user_id, row in templates.items()
    }
    user_ids = list(portal.users)
    row_seed = seed * 1_000_003 + portal.index
    portal.tables = {
        "deal": EntityTable(deal_generator(row_seed, user_ids, contacts, companies), deals),
        "lead": EntityTable(lead_generator(row_seed, user_ids), leads),
        "contact": EntityTable(contact_generator(row_seed, user_ids, companies), contacts),
        "company": EntityTable(company_generator(row_seed, user_ids), companies),
    }
    # Statuses and currencies are the same on every fresh account: rows come from shared
    # templates (copied on read / per portal), so seeding thousands of portals stays fast.
    portal.statuses = EntityTable(_status_row, len(STATUSES))
    # LANG is nested and writable (crm.currency.localizations.set): each portal gets its own.
    portal.currencies = {
        code: {**row, "LANG": {lid: dict(values) for lid, values in row["LANG"].items()}}
        for code, row in _CURRENCY_ROWS.items()
    }


def _status_row(row_id: int) -> Row:
    entity_id, status_id, name, sort, semantics = STATUSES[row_id - 1]
    return {
        "ID": str(row_id),
        "ENTITY_ID": entity_id,
        "STATUS_ID": status_id,
        "NAME": name,
        "NAME_INIT": name,
        "SORT": str(sort),
        "SYSTEM": "Y" if status_id in ("NEW", "WON", "LOSE", "CONVERTED", "JUNK") else "N",
        "COLOR": None,
        "SEMANTICS": semantics,
        "CATEGORY_ID": "0" if entity_id == "DEAL_STAGE" else None,
    }


def currency_localization(full_name: str, format_string: str, decimals: int) -> Row:
    """One language's currency localization, in the shape of RD crm/currency/localizations."""
    return {
        "FORMAT_STRING": format_string,
        "FULL_NAME": full_name,
        "DEC_POINT": ".",
        "THOUSANDS_SEP": None,
        "DECIMALS": str(decimals),
        "THOUSANDS_VARIANT": "C",
        "HIDE_ZERO": "Y",
    }


def _currency_rows() -> dict[str, Row]:
    rows = {}
    for code, full_name, amount, sort, fmt, decimals in CURRENCIES:
        rows[code] = {
            "CURRENCY": code,
            "AMOUNT_CNT": "1",
            "AMOUNT": amount,
            "SORT": str(sort),
            "BASE": "Y" if code == "USD" else "N",
            "FULL_NAME": full_name,
            "LID": "en",
            "FORMAT_STRING": fmt,
            "DEC_POINT": ".",
            "THOUSANDS_SEP": ",",
            "DECIMALS": str(decimals),
            "DATE_UPDATE": bitrix_datetime(EPOCH),
            "LANG": {"en": currency_localization(full_name, fmt, decimals)},
        }
    return rows


_CURRENCY_ROWS = _currency_rows()
