"""The statements the store runs on the database thread (``await database.run(fn, ...)``), never on the loop.

A batch the database refuses for what it holds (not for being unavailable) is bisected until the refused rows
stand alone, so one bad row never costs the others; a lone refused row is handed back to the caller, unless
the database refuses even a plain row (a changed schema, a full disk), which keeps the whole batch queued.
"""

from __future__ import annotations

from router.response_store.rows import COLUMNS, ResponseRow, row_from_database
from router.store.database import Database, DatabaseUnavailable

INSERT = (f"INSERT INTO stored_responses ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
          "ON CONFLICT (id) DO UPDATE SET response = excluded.response, input_items = excluded.input_items, "
          "previous_id = excluded.previous_id, "
          "deployment = excluded.deployment, provider = excluded.provider, expires_at = excluded.expires_at "
          "WHERE stored_responses.agent = excluded.agent "
          "OR (stored_responses.agent IS NULL AND excluded.agent IS NULL)")
"""A response kept again (a background response, completed later) replaces its row, for the same owner only:
another agent's row with that id is never taken over."""
SELECT = f"SELECT {', '.join(COLUMNS)} FROM stored_responses WHERE id = ?"

_PROBE = ResponseRow("response-store-probe", None, "{}", "[]", "probe", "probe", 1.0, 1.0)


class DatabaseRefusesRows(DatabaseUnavailable):
    """The database refuses even a plain row: nothing is wrong with the queued ones; they wait."""


class _RolledBack(Exception):
    """Ends the probe transaction (nothing it wrote is kept)."""


def write_rows(database: Database, rows: list[ResponseRow]) -> list[ResponseRow]:
    """Insert ``rows``; return the ones the database refused, each alone (all the others are written)."""
    try:
        database.executemany(INSERT, [row.values() for row in rows])
        return []
    except DatabaseUnavailable:
        raise
    except Exception:
        if len(rows) == 1:
            if not accepts_plain_rows(database):
                raise DatabaseRefusesRows("the database refuses even a plain stored response") from None
            return rows
    half = len(rows) // 2
    return write_rows(database, rows[:half]) + write_rows(database, rows[half:])


def accepts_plain_rows(database: Database) -> bool:
    """Whether the database takes a plain row (in a transaction rolled back at once)."""
    try:
        with database.transaction() as cursor:
            cursor.execute(database.sql(INSERT), _PROBE.values())
            raise _RolledBack
    except _RolledBack:
        return True
    except DatabaseUnavailable:
        raise
    except Exception:
        return False


def fetch_row(database: Database, response_id: str) -> ResponseRow | None:
    found = database.fetchone(SELECT, (response_id,))
    return None if found is None else row_from_database(found)


def delete_row(database: Database, response_id: str) -> bool:
    """Delete one response; whether a row was there."""
    with database.transaction() as cursor:
        cursor.execute(database.sql("DELETE FROM stored_responses WHERE id = ?"), (response_id,))
        return bool(cursor.rowcount and cursor.rowcount > 0)


def purge_expired(database: Database, now: float, limit: int) -> int:
    """Delete at most ``limit`` responses expired by ``now`` (bounded work per pass); how many went."""
    with database.transaction() as cursor:
        cursor.execute(database.sql("DELETE FROM stored_responses WHERE id IN (SELECT id FROM stored_responses "
                                    "WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"), (now, limit))
        return max(0, cursor.rowcount or 0)
