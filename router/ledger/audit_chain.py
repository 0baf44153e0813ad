"""The audit trail: policy decisions stored append-only, chained by hashes so tampering shows.

Row ``seq`` (1, 2, 3... without gaps) stores ``prev_hash`` (the hash of row ``seq - 1``; 64 zeros for the first)
and ``hash = sha256(prev_hash + canonical JSON of the row's fields)``. ``audit_head`` keeps the last sequence
number and hash, written in the same transaction, so a deleted tail is detected too. Appends take a lock
(PostgreSQL advisory lock; SQLite's write lock) so several replicas keep one linear chain.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from router.store.database import Database

GENESIS = "0" * 64
FIELDS: tuple[str, ...] = ("seq", "ts", "request_id", "agent", "role", "model", "tool", "action", "stage", "rule",
                           "reason", "policy_version", "extra")
_TEXT_FIELDS = FIELDS[2:12]
_ADVISORY_LOCK = 727_301
_PAGE = 5000


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    canonical = json.dumps({name: row.get(name) for name in FIELDS}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def normalise(event: dict[str, Any]) -> dict[str, Any]:
    """An event as it is stored: known fields as text, ts to the microsecond, anything else in ``extra``."""
    try:
        ts = float(event.get("ts") or time.time())
    except (TypeError, ValueError):
        ts = time.time()
    row: dict[str, Any] = {"ts": round(ts if math.isfinite(ts) else time.time(), 6)}
    for name in _TEXT_FIELDS:
        value = event.get(name)
        row[name] = None if value is None else str(value)
    others = {k: v for k, v in event.items() if k not in FIELDS}
    row["extra"] = json.dumps(others, sort_keys=True, separators=(",", ":"), default=str) if others else None
    return row


def append(database: Database, cursor: Any, events: list[dict[str, Any]]) -> None:
    """Chain ``events`` after the current head, inside the caller's transaction."""
    if not events:
        return
    if database.dialect == "postgres":
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
    cursor.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
    head = cursor.fetchone()
    if head is None:
        cursor.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        head = cursor.fetchone()
    seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    rows = []
    for event in events:
        seq += 1
        row = {"seq": seq, **normalise(event)}
        digest = row_hash(prev, row)
        rows.append((*tuple(row[name] for name in FIELDS), prev, digest))
        prev = digest
    columns = ", ".join((*FIELDS, "prev_hash", "hash"))
    marks = ", ".join("?" for _ in range(len(FIELDS) + 2))
    cursor.executemany(database.sql(f"INSERT INTO audit_events ({columns}) VALUES ({marks})"), rows)
    cursor.execute(database.sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"), (seq, prev))
    if cursor.rowcount == 0:
        cursor.execute(database.sql("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)"), (seq, prev))


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None
    """The first row found missing, altered or out of chain."""


def verify(database: Database) -> Verification:
    """Walk the whole chain in order; stop at the first missing, altered or re-chained row."""
    expected_seq, prev, checked = 1, GENESIS, 0
    columns = ", ".join((*FIELDS, "prev_hash", "hash"))
    while True:
        rows = database.fetchall(f"SELECT {columns} FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT {_PAGE}",
                                 (expected_seq,))
        for row in rows:
            seq = int(row["seq"])
            if seq != expected_seq:
                span = f"rows {expected_seq}..{seq - 1} are" if seq - 1 > expected_seq else f"row {expected_seq} is"
                return Verification(False, checked, f"seq {expected_seq}: missing ({span} absent)", expected_seq)
            if row["prev_hash"] != prev:
                return Verification(False, checked, f"seq {seq}: its prev_hash does not match the hash of row "
                                    f"{seq - 1} (row {seq - 1} was altered or replaced)", seq - 1)
            if row_hash(prev, {**row, "ts": float(row["ts"])}) != row["hash"]:
                return Verification(False, checked, f"seq {seq}: altered (its contents no longer match its hash)",
                                    seq)
            prev, expected_seq, checked = row["hash"], seq + 1, checked + 1
        if len(rows) < _PAGE:
            break
    head = database.fetchone("SELECT seq, hash FROM audit_head WHERE id = 1")
    if head is not None and (int(head["seq"]) != expected_seq - 1 or head["hash"] != prev):
        return Verification(False, checked, f"seq {expected_seq}: missing (the chain head says the last row is "
                            f"seq {head['seq']}, the table ends at seq {expected_seq - 1})", expected_seq)
    return Verification(True, checked)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: float | None = None
    until: float | None = None
    agent: str | None = None
    role: str | None = None
    tool: str | None = None
    action: str | None = None
    request_id: str | None = None
    limit: int = 100


def list_events(database: Database, where: AuditFilter) -> list[dict[str, Any]]:
    """Matching events, newest first (at most ``limit``)."""
    clauses, params = [], []
    if where.since is not None:
        clauses.append("ts >= ?")
        params.append(where.since)
    if where.until is not None:
        clauses.append("ts < ?")
        params.append(where.until)
    for name in ("agent", "role", "tool", "action", "request_id"):
        value = getattr(where, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    limit = max(1, min(int(where.limit), 100_000))
    return database.fetchall(f"SELECT {', '.join(FIELDS)}, prev_hash, hash FROM audit_events{condition} "
                             f"ORDER BY seq DESC LIMIT {limit}", params)
