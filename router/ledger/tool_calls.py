"""Tool-call rows (table ``mcp_calls``): one per :class:`router.mcp.records.ToolCallRecord`, plus its UTC day.

They travel in the writer's queue inside a :class:`router.ledger.records.FinishedRequest` (its ``tool_calls``),
so they share the model plane's batches, transactions, retry, queue bound, spill file and hash chain. A call's
``request_id`` is unique per call: with its ``ts`` it tells a spilled record that is already stored (see
:func:`stored_keys`).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from router.ledger.records import Row, utc_day
from router.ledger.storable import row_sanitiser, storable
from router.mcp.records import COLUMNS as RECORD_COLUMNS
from router.mcp.records import ToolCallRecord
from router.store.database import Database

COLUMNS: tuple[str, ...] = (*RECORD_COLUMNS, "day")
"""An ``mcp_calls`` row's values, in this order: the record's fields, then its day (``YYYY-MM-DD``, UTC)."""
_TEXT = frozenset(("request_id", "session", "agent", "role", "server", "method", "tool", "arguments_sha256",
                   "arguments", "decision", "rule", "reason", "outcome", "error", "credential", "policy_version",
                   "day"))
TEXT_POSITIONS: tuple[int, ...] = tuple(number for number, name in enumerate(COLUMNS) if name in _TEXT)
REQUEST_ID, TS = COLUMNS.index("request_id"), COLUMNS.index("ts")
assert REQUEST_ID == 1, "records.FinishedRequest.request_id reads a tool call's request id at position 1"
_values_of = attrgetter(*RECORD_COLUMNS)
_IDS_PER_QUERY = 500

storable_row = row_sanitiser(TEXT_POSITIONS)


def row_of(record: ToolCallRecord) -> Row:
    """The record as a row in :data:`COLUMNS` order (no I/O; cheap enough for the event loop)."""
    values: tuple[Any, ...] = _values_of(record)
    try:
        day = utc_day(float(record.ts))
    except (TypeError, ValueError, OverflowError):
        day = "1970-01-01"  # a time that is not one: the row is still stored (its ts is made storable)
    return (*values, day)


def key_of(row: Row) -> tuple[str, float | None]:
    """What a stored row is recognised by: its request id as stored, and its time."""
    ts = row[TS]
    try:
        when: float | None = float(ts)
    except (TypeError, ValueError):
        when = None
    return storable(str(row[REQUEST_ID])), when


def stored_keys(database: Database, cursor: Any, rows: list[Row]) -> set[tuple[str, float | None]]:
    """The keys (:func:`key_of`) of ``rows`` already in ``mcp_calls`` (inside the caller's transaction)."""
    ids = sorted({key_of(row)[0] for row in rows})
    found: set[tuple[str, float | None]] = set()
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start:start + _IDS_PER_QUERY]
        cursor.execute(database.sql(f"SELECT request_id, ts FROM mcp_calls WHERE request_id IN "
                                    f"({', '.join('?' * len(chunk))})"), chunk)
        found.update((str(r[0]), float(r[1])) for r in cursor.fetchall())
    return found
