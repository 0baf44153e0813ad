"""Multi-row INSERTs: a batch of rows in a few statements instead of one statement per row.

On SQLite every statement step releases and retakes the GIL (a thread switch the event loop pays for when the
writer shares its CPU); on PostgreSQL every statement is a round trip. A few hundred rows per statement makes
both costs vanish per row. The row count per statement stays under each dialect's bound-parameter limit.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from router.store.database import Database

ROWS_PER_INSERT = 200
_SQLITE_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_POSTGRES_VARIABLES = 65_535


def insert_rows(database: Database, cursor: Any, table: str, columns: tuple[str, ...],
                rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) inside the caller's transaction."""
    postgres = database.dialect == "postgres"
    per = max(1, min(ROWS_PER_INSERT, (_POSTGRES_VARIABLES if postgres else _SQLITE_VARIABLES) // len(columns)))
    one = f"({', '.join(('%s' if postgres else '?') for _ in columns)})"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    full = len(rows) - len(rows) % per
    if full:
        statement = head + ", ".join([one] * per)
        for start in range(0, full, per):
            cursor.execute(statement, [value for row in rows[start:start + per] for value in row])
    if full < len(rows):
        tail = rows[full:]
        cursor.execute(head + ", ".join([one] * len(tail)), [value for row in tail for value in row])
