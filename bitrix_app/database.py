"""Hot-path statements on PostgreSQL: server-side binding, prepared once per connection, no health check.

Django's cursor binds parameters client-side (quoting each one in Python), plans every statement
anew, and before the first statement of a request sends a ``SELECT 1`` (CONN_HEALTH_CHECKS): a
second round trip. For the statements run on every event and every uncached API answer that cost
more than the statement itself (docs/events.md, docs/api.md). Here the statement is prepared on
the connection (psycopg keeps the most recent ones) and runs alone. A connection that died since
the last request fails this one statement instead of being replaced first: wrap_database_errors
marks it, the end of the request closes it, and the next request reconnects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connection


def fetch_prepared(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``%s`` placeholders) run with ``params`` on Django's connection, inside
    its transaction if one is open (PostgreSQL only)."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, list(params), prepare=True)
        return cursor.fetchall()
