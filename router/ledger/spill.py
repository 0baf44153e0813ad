"""The spill file: records a shutdown could not write to the database, kept on local disk until the next start.

When the drain timeout passes with records still queued (the database unreachable), the writer appends each
request's records to the spill file as one JSON line (``{"v": 1, "rows": [{column: value}...], "audit_events":
[...]}``; an MCP tool call's line adds ``"tool_calls": [{column: value}]``), then fsyncs the file and its
directory. Appending never overwrites an earlier spill that was not replayed yet.

At the next start the file is claimed (renamed to ``<file>.replaying-<time>``; claims a crash left behind are
picked up too) and its records are written like any others, in batches. Replay is idempotent: each batch checks,
in the transaction that writes it, which of its requests are already stored (by the request id, kind, attempt
and time of the request's first row; a tool call by its request id and time; a request's rows and audit events
are always committed together), so a process that dies mid-replay, or a write whose commit was in doubt at
shutdown, never doubles a record. Audit events are chained when they are written, so the chain stays valid. A
replayed claim is renamed ``<file>.replayed-<time>`` (kept for the operator to delete).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from router.ledger import tool_calls
from router.ledger.audit_chain import stored_ts
from router.ledger.records import COLUMNS, FinishedRequest
from router.store.database import Database

log = logging.getLogger("agent_router.ledger")

DEFAULT_NAME = "agent-router-spill.jsonl"
VERSION = 1
_REQUEST_ID, _KIND, _ATTEMPT, _TS = (COLUMNS.index(name) for name in ("request_id", "kind", "attempt", "ts"))
_IDS_PER_QUERY = 500


def spill_path(setting: str | None, database_url: str) -> Path:
    """The setting; else next to the SQLite file; else (PostgreSQL, in-memory SQLite) in the working directory."""
    if setting:
        return Path(setting)
    if database_url.startswith("sqlite:///"):
        db = database_url[len("sqlite:///"):]
        if db and db != ":memory:":
            return Path(db).parent / DEFAULT_NAME
    return Path(DEFAULT_NAME)


def to_line(item: FinishedRequest) -> bytes:
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in item.rows]
    record: dict[str, Any] = {"v": VERSION, "rows": rows, "audit_events": item.audit_events}
    if item.tool_calls:
        record["tool_calls"] = [dict(zip(tool_calls.COLUMNS, row, strict=True)) for row in item.tool_calls]
    return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def from_line(line: bytes) -> FinishedRequest:
    record = orjson.loads(line)
    if not isinstance(record, dict) or record.get("v") != VERSION:
        raise ValueError("not a spill record of version 1")
    rows = [tuple(row.get(column) for column in COLUMNS) for row in record.get("rows") or []]
    calls = [tuple(row.get(column) for column in tool_calls.COLUMNS) for row in record.get("tool_calls") or []]
    return FinishedRequest(rows, list(record.get("audit_events") or []), tool_calls=calls)


def spill(path: Path, items: list[FinishedRequest]) -> None:
    """Append ``items`` to ``path``, one JSON line each, and make them durable (fsync of file and directory)."""
    if not items:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(map(to_line, items))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_directory(path.parent)


def _sync_directory(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def claim(path: Path) -> list[Path]:
    """Rename the spill file to a claim of this start; return every claim waiting (older ones first)."""
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.replaying-{time.time_ns()}"))
        _sync_directory(path.parent)
    claims = path.parent.glob(f"{path.name}.replaying-*")
    return sorted(claims, key=lambda found: found.name)


def load(claims: list[Path]) -> list[FinishedRequest]:
    """The records of the claims, each request once (a request spilled twice is loaded once); a line that
    cannot be read (cut short by a crash while spilling) is logged and skipped."""
    items: list[FinishedRequest] = []
    seen: set[tuple[Any, ...]] = set()
    for claimed in claims:
        for number, line in enumerate(claimed.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = from_line(line)
            except ValueError as exc:
                log.error("ledger: line %d of the spill file %s cannot be read (%s); skipped", number, claimed, exc)
                continue
            key = identity(item)
            if key not in seen:
                seen.add(key)
                items.append(item)
    return items


def done(claims: list[Path]) -> None:
    """Every record of ``claims`` is in the database (or spilled again): keep them as ``.replayed-<time>``."""
    for claimed in claims:
        name = claimed.name.replace(".replaying-", ".replayed-", 1)
        try:
            os.replace(claimed, claimed.with_name(name))
        except FileNotFoundError:
            continue
    if claims:
        _sync_directory(claims[0].parent)


def identity(item: FinishedRequest) -> tuple[Any, ...]:
    """What tells a request's records apart from every other request's: its first row (or first event)."""
    if item.rows:
        row = item.rows[0]
        return ("row", row[_REQUEST_ID], row[_KIND], row[_ATTEMPT], row[_TS])
    if item.tool_calls:
        return ("tool_call", *tool_calls.key_of(item.tool_calls[0]))
    event = item.audit_events[0] if item.audit_events else {}
    return ("event", event.get("request_id"), event.get("action"), event.get("ts"))


def not_stored(database: Database, cursor: Any, items: list[FinishedRequest]) -> list[FinishedRequest]:
    """Of ``items``, those whose records are not in the database yet (inside the caller's transaction)."""
    by_row = [item for item in items if item.rows]
    stored: set[tuple[Any, ...]] = set()
    ids = sorted({str(item.rows[0][_REQUEST_ID]) for item in by_row})
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start:start + _IDS_PER_QUERY]
        cursor.execute(database.sql(f"SELECT request_id, kind, attempt, ts FROM usage_records WHERE request_id IN "
                                    f"({', '.join('?' * len(chunk))})"), chunk)
        stored.update(("row", r[0], r[1], int(r[2]), float(r[3])) for r in cursor.fetchall())
    calls = [item.tool_calls[0] for item in items if not item.rows and item.tool_calls]
    stored_calls = tool_calls.stored_keys(database, cursor, calls) if calls else set()
    events = [item for item in items if not item.rows and not item.tool_calls and item.audit_events]
    seen_events: set[tuple[Any, ...]] = set()
    event_ids = sorted({str(item.audit_events[0].get("request_id")) for item in events})
    for start in range(0, len(event_ids), _IDS_PER_QUERY):
        chunk = event_ids[start:start + _IDS_PER_QUERY]
        cursor.execute(database.sql(f"SELECT request_id, action, ts FROM audit_events WHERE request_id IN "
                                    f"({', '.join('?' * len(chunk))})"), chunk)
        seen_events.update((r[0], r[1], float(r[2])) for r in cursor.fetchall())
    kept = []
    for item in items:
        if item.rows:
            key = identity(item)
            if ("row", key[1], key[2], int(key[3]), float(key[4])) in stored:
                continue
        elif item.tool_calls:
            if tool_calls.key_of(item.tool_calls[0]) in stored_calls:
                continue
        elif item.audit_events:
            event = item.audit_events[0]
            ts = event.get("ts")
            if isinstance(ts, float) and (event.get("request_id"), event.get("action"),
                                          stored_ts(ts)) in seen_events:
                continue
        kept.append(item)
    return kept
