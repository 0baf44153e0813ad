"""The audit trail: policy decisions stored append-only, chained by hashes so tampering shows.

Row ``seq`` (1, 2, 3... without gaps) stores ``prev_hash`` (the hash of row ``seq - 1``; 64 zeros for the first)
and ``hash = sha256(prev_hash + canonical(row))``, the canonical form being the compact JSON array of the row's
:data:`FIELDS` values in that order (computed in the writer's thread, a batch at a time). ``audit_head`` keeps
the last sequence number and hash, written in the same transaction, so a deleted tail is detected too. Appends
take a lock (PostgreSQL advisory lock; SQLite's write lock) so several replicas keep one linear chain.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from router.ledger.bulk import insert_rows
from router.ledger.storable import TextValues, storable, storable_texts, strict
from router.store.database import Database

GENESIS = "0" * 64
FIELDS: tuple[str, ...] = ("seq", "ts", "request_id", "agent", "role", "model", "tool", "action", "stage", "rule",
                           "reason", "policy_version", "extra")
_TEXT_FIELDS = FIELDS[2:12]
_texts_of = itemgetter(*_TEXT_FIELDS)
_EVENT_SIZE = len(_TEXT_FIELDS) + 1
"""Keys of an event with every text field and ``ts``, and nothing else."""
_KNOWN = frozenset(FIELDS)
_PLAIN = frozenset((str, type(None)))
_COLUMNS = (*FIELDS, "prev_hash", "hash")
_YIELD_EVERY = 64
"""Events chained between voluntary releases of the interpreter lock (see router.ledger.writer.YIELD_EVERY)."""
_ADVISORY_LOCK = 727_301
_PAGE = 5000
_CANONICAL = orjson.dumps


def canonical(values: tuple[Any, ...]) -> bytes:
    """What a row's hash covers: its :data:`FIELDS` values, in that order, as a compact JSON array.

    ``seq`` an integer, ``ts`` a float (epoch seconds, rounded to the microsecond), the others strings or null.
    The hash covers the float as stored, so how it was rounded does not matter to verification.
    """
    return _CANONICAL(values)


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """``sha256(prev_hash + canonical(row))`` as hex, for a row given as a mapping of :data:`FIELDS`."""
    return _chained(prev_hash, tuple(row.get(name) for name in FIELDS))


def _chained(prev_hash: str, values: tuple[Any, ...]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(values)).hexdigest()


def _hash_of_stored(prev_hash: str, row: dict[str, Any]) -> str | None:
    """The hash a stored row should have; None when a value of an impossible type was written into it."""
    try:
        return row_hash(prev_hash, {**row, "ts": float(row["ts"])})
    except (TypeError, ValueError):
        return None


def _strict_texts(values: TextValues) -> TextValues:
    return tuple(map(strict, values))


def _stored(seq: int, event: dict[str, Any], strictly: bool = False) -> tuple[Any, ...]:
    """An event as it is stored, in :data:`FIELDS` order: known fields as text, ts to the microsecond, anything
    else as sorted JSON in ``extra``; every text made storable (``storable``; ``strictly``: its strict form)
    before it is hashed, so the hash covers what the database holds.

    Runs once per event; the usual event (from the policy or identity stage: every text field present, a float
    ts, strings or None, nothing else) takes the first branch of each test.
    """
    ts = event.get("ts")
    if type(ts) is not float or not ts or not math.isfinite(ts):
        ts = _timestamp(ts)
    try:
        texts = _texts_of(event)
        complete = len(event) == _EVENT_SIZE and "ts" in event
    except KeyError:
        texts, complete = tuple(map(event.get, _TEXT_FIELDS)), False
    if not _PLAIN.issuperset(map(type, texts)):
        texts = tuple(None if value is None else str(value) for value in texts)
    extra = None
    if not complete and not _KNOWN.issuperset(event):
        extra = _extra({k: v for k, v in event.items() if k not in _KNOWN})
    if strictly:
        texts, extra = _strict_texts(texts), strict(extra)
    else:
        texts = storable_texts(texts)
        extra = None if extra is None else storable(extra)
    return (seq, _to_microsecond(ts), *texts, extra)


def _to_microsecond(ts: float) -> float:
    """``round(ts, 6)`` without its trip through decimal text (twice as fast). The fraction alone is scaled,
    so that no precision is lost in the product (``round(ts * 1e6)`` would misplace 1 in 8 epoch times)."""
    whole = int(ts)
    return whole + round((ts - whole) * 1e6) / 1e6


def _timestamp(value: Any) -> float:
    try:
        ts = float(value or time.time())
    except (TypeError, ValueError):
        return time.time()
    return ts if math.isfinite(ts) else time.time()


def _extra(others: dict[str, Any]) -> str:
    try:
        return orjson.dumps(others, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str).decode()
    except TypeError:  # e.g. an integer beyond 64 bits; the stored text is what the hash covers, sorted or not
        return json.dumps(others, separators=(",", ":"), default=str)


def append(database: Database, cursor: Any, events: list[dict[str, Any]], strictly: bool = False) -> None:
    """Chain ``events`` after the current head, inside the caller's transaction (``strictly``: every text in
    its strict form, for events the database refused as they were). Hashes are computed here, from the head
    the transaction reads, so a rolled-back attempt leaves nothing a later one could chain from."""
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
    sha256, dumps = hashlib.sha256, _CANONICAL
    for i, event in enumerate(events):
        seq += 1
        values = _stored(seq, event, strictly)
        digest = sha256(prev.encode() + dumps(values)).hexdigest()  # _chained(prev, values), inlined
        rows.append((*values, prev, digest))
        prev = digest
        if i % _YIELD_EVERY == _YIELD_EVERY - 1:
            time.sleep(0)  # a long batch must not keep the interpreter lock from the event loop
    insert_rows(database, cursor, "audit_events", _COLUMNS, rows)
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
            if _hash_of_stored(prev, row) != row["hash"]:
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
