"""Bulk writes: a batch of rows in a few statements instead of one statement per row.

SQLite: multi-row ``INSERT ... VALUES (...), (...)``. Every statement step releases and retakes the GIL (a thread
switch the event loop pays for when the writer shares its CPU), and a prepared multi-row statement binds a row
for about 3/4 of what ``executemany`` costs. Statements hold a power of two of rows (256 at most), so the few
shapes a batch of any size needs stay in the connection's statement cache instead of being compiled for each
odd-sized remainder (compiling one costs about half as much as running it).

PostgreSQL: ``COPY ... FROM STDIN``. A multi-row INSERT makes psycopg parse a query of thousands of
placeholders on every call (queries that long are not cached), which costs about 18x the CPU of COPY, whose
rows are formatted in C; ``executemany`` sits between the two.
"""

from __future__ import annotations

import sqlite3
from itertools import chain
from typing import Any

from router.store.database import Database

ROWS_PER_INSERT = 256
"""Rows in the largest SQLite statement (a power of two; halved while it exceeds the bound-variable limit)."""
_SQLITE_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999


def insert_rows(database: Database, cursor: Any, table: str, columns: tuple[str, ...],
                rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) inside the caller's transaction."""
    if not rows:
        return
    if database.dialect == "postgres":
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    width = len(columns)
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    one = f"({', '.join('?' * width)})"
    flat = list(chain.from_iterable(rows))
    size, start, left = _largest(width), 0, len(rows)
    while left:
        while size > left:
            size //= 2
        statement = head + ", ".join([one] * size)
        step = size * width
        for _ in range(left // size):
            cursor.execute(statement, flat[start:start + step])
            start += step
        left %= size


def _largest(width: int) -> int:
    """The most rows per statement: ROWS_PER_INSERT, halved until the statement fits SQLite's variable limit."""
    size = ROWS_PER_INSERT
    while size > 1 and size * width > _SQLITE_VARIABLES:
        size //= 2
    return size
