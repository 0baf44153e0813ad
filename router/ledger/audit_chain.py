"""The audit trail: policy decisions stored append-only, chained by hashes so tampering shows.

Row ``seq`` (1, 2, 3... without gaps) stores ``prev_hash`` (the hash of row ``seq - 1``; 64 zeros for the first)
and ``hash = sha256(prev_hash + canonical(row))``, the canonical form being the compact JSON array of the row's
:data:`FIELDS` values in that order (computed in the writer's thread, a batch at a time). With an audit key the
hash is ``HMAC-SHA256(key, prev_hash + canonical(row))`` and the row's ``key_id`` names the key (see
``audit_key``). ``audit_head`` keeps the last sequence number and hash, written in the same transaction, so a
deleted tail is detected too; a head that disagrees with the table is recorded as a break, never re-derived.
Appends take a lock (PostgreSQL advisory lock; SQLite's write lock) so several replicas keep one linear chain.
Verification lives in ``audit_verify``; publishing the head outside the database in ``audit_anchor``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from router.ledger import audit_rows
from router.ledger.audit_key import AuditKey
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
_COLUMNS = (*FIELDS, "key_id", "prev_hash", "hash")
_YIELD_EVERY = 64
"""Events chained between voluntary releases of the interpreter lock (see router.ledger.writer.YIELD_EVERY)."""
_ADVISORY_LOCK = 727_301
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


def hash_of_stored(prev_hash: str, row: dict[str, Any], key: AuditKey | None) -> str | None:
    """The hash a stored row should have (an HMAC with ``key``); None when a value of an impossible type was
    written into it."""
    try:
        values = tuple(float(row["ts"]) if name == "ts" else row.get(name) for name in FIELDS)
        return _chained(prev_hash, values) if key is None else key.seal(prev_hash, canonical(values))
    except (TypeError, ValueError):
        return None


def _strict_texts(values: TextValues) -> TextValues:
    return tuple(map(strict, values))


def _stored(seq: int, event: dict[str, Any], strictly: bool = False) -> tuple[Any, ...]:
    """An event as it is stored, in :data:`FIELDS` order: known fields as text, ts to the microsecond, anything
    else (and the keys of an ``extra`` mapping the event gives) as sorted JSON in ``extra``; every text made
    storable (``storable``; ``strictly``: its strict form) before it is hashed, so the hash covers what the
    database holds.

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
    if not complete and (not _KNOWN.issuperset(event) or "extra" in event):
        extra = _extra_of(event)
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


def stored_ts(ts: float) -> float:
    """The ``ts`` an event given with this float time is stored (and hashed) with."""
    return _to_microsecond(ts if ts and math.isfinite(ts) else _timestamp(ts))


def _timestamp(value: Any) -> float:
    try:
        ts = float(value or time.time())
    except (TypeError, ValueError):
        return time.time()
    return ts if math.isfinite(ts) else time.time()


def _extra_of(event: dict[str, Any]) -> str | None:
    """An event's ``extra``: its keys beyond :data:`FIELDS`, merged with its own ``extra`` mapping when it gives
    one (the MCP gateway's ``{"server", "method", "session"}``); a top-level key wins over the same one inside."""
    others = {k: v for k, v in event.items() if k not in _KNOWN}
    given = event.get("extra")
    if isinstance(given, dict):
        others = {**given, **others}
    elif given is not None:
        others = {"extra": given, **others}
    return _extra(others) if others else None


def _extra(others: dict[str, Any]) -> str:
    try:
        return orjson.dumps(others, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str).decode()
    except TypeError:  # e.g. an integer beyond 64 bits; the stored text is what the hash covers, sorted or not
        return json.dumps(others, separators=(",", ":"), default=str)


BREAK_ACTION = "chain_break"
ACK_ACTION = "break_acknowledged"
AUDIT_STAGE = "audit"
"""The stage of the events the chain writes about itself: a break found, a break acknowledged."""


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """A head that disagreed with the table, found by an append and recorded as the event at ``seq``."""

    seq: int
    reason: str


def head_problem(head: tuple[int, str] | None, last: tuple[int, str] | None) -> str | None:
    """Why the head row (seq, hash) and the table's last row disagree; None when they agree (or both are absent)."""
    if head is None and last is None:
        return None
    if head is None:
        assert last is not None
        return (f"the chain head is missing while the table ends at seq {last[0]} (rows deleted together with the "
                "head?)")
    if last is None:
        return f"the table is empty while the chain head says the last row is seq {head[0]} (every row deleted?)"
    if head[0] != last[0]:
        return f"the chain head says the last row is seq {head[0]}, the table ends at seq {last[0]}"
    if head[1] != last[1]:
        return f"the chain head's hash is not the hash of the last row, seq {last[0]} (that row was replaced?)"
    return None


def append(database: Database, cursor: Any, events: list[dict[str, Any]], key: AuditKey | None = None,
           strictly: bool = False) -> ChainBreak | None:
    """Chain ``events`` after the last row, inside the caller's transaction; sealed with ``key`` when given
    (``strictly``: every text in its strict form, for events the database refused as they were).

    Hashes are computed here, from the last row the transaction reads, so a rolled-back attempt leaves nothing a
    later one could chain from.

    A head that disagrees with the table is never re-derived in silence: a ``chain_break`` event is chained
    first, naming what the head and the table said, and the head's ``open_break`` is set, so the cut stays
    visible to ``verify`` and ``/readyz`` until an operator acknowledges it. The events still chain on top of
    the last row: none is lost. Returns the break recorded, if any.
    """
    if not events:
        return None
    if database.dialect == "postgres":
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
    cursor.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
    found = cursor.fetchone()
    head = (int(found[0]), str(found[1])) if found else None
    cursor.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
    found = cursor.fetchone()
    last = (int(found[0]), str(found[1])) if found else None
    seq, prev = last or (0, GENESIS)
    problem = head_problem(head, last)
    cut = None
    if problem is not None:
        cut = ChainBreak(seq + 1, problem)
        events = [_break_event(problem, head, last), *events]
    rows = []
    sha256, dumps = hashlib.sha256, _CANONICAL
    key_id = key.key_id if key is not None else None
    for i, event in enumerate(events):
        seq += 1
        values = _stored(seq, event, strictly)
        data = dumps(values)
        digest = sha256(prev.encode() + data).hexdigest() if key is None else key.seal(prev, data)  # inlined
        rows.append((*values, key_id, prev, digest))
        prev = digest
        if i % _YIELD_EVERY == _YIELD_EVERY - 1:
            time.sleep(0)  # a long batch must not keep the interpreter lock from the event loop
    insert_rows(database, cursor, "audit_events", _COLUMNS, rows)
    _move_head(database, cursor, seq, prev, cut)
    return cut


def _move_head(database: Database, cursor: Any, seq: int, digest: str, cut: ChainBreak | None) -> None:
    if cut is None:
        cursor.execute(database.sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"), (seq, digest))
    else:
        cursor.execute(database.sql("UPDATE audit_head SET seq = ?, hash = ?, open_break = ? WHERE id = 1"),
                       (seq, digest, cut.seq))
    if cursor.rowcount == 0:
        cursor.execute(database.sql("INSERT INTO audit_head (id, seq, hash, open_break) VALUES (1, ?, ?, ?)"),
                       (seq, digest, cut.seq if cut else None))


def _break_event(problem: str, head: tuple[int, str] | None, last: tuple[int, str] | None) -> dict[str, Any]:
    return {"ts": time.time(), "stage": AUDIT_STAGE, "action": BREAK_ACTION, "rule": "head-check",
            "reason": problem, "head_seq": head[0] if head else None, "head_hash": head[1] if head else None,
            "last_seq": last[0] if last else None, "last_hash": last[1] if last else None}


def acknowledge(database: Database, key: AuditKey | None, break_seq: int, note: str) -> int | None:
    """Chain an operator's acknowledgement of the break recorded at ``break_seq`` and lower the head's flag.

    Returns the acknowledgement's seq; None when no break is recorded at ``break_seq``. The break itself stays
    in the chain (``verify`` keeps naming it, as acknowledged).
    """
    with database.transaction() as cursor:
        cursor.execute(database.sql("SELECT action, stage FROM audit_events WHERE seq = ?"), (break_seq,))
        row = cursor.fetchone()
        if row is None or (row[0], row[1]) != (BREAK_ACTION, AUDIT_STAGE):
            return None
        append(database, cursor, [{"ts": time.time(), "stage": AUDIT_STAGE, "action": ACK_ACTION,
                                   "rule": "operator", "reason": note, "break_seq": break_seq}], key)
        cursor.execute(database.sql("UPDATE audit_head SET open_break = NULL WHERE id = 1 AND open_break <= ?"),
                       (break_seq,))
        cursor.execute("SELECT seq FROM audit_head WHERE id = 1")
        return int(cursor.fetchone()[0])


class ChainAppender:
    """What the ledger writer appends with: the router's key (or none), and whom to tell of a break it finds."""

    def __init__(self, key: AuditKey | None = None, on_break: Callable[[ChainBreak], None] | None = None) -> None:
        self.key = key
        self.on_break = on_break

    def append(self, database: Database, cursor: Any, events: list[dict[str, Any]], strictly: bool = False) -> None:
        cut = append(database, cursor, events, self.key, strictly)
        if cut is not None and self.on_break is not None:
            self.on_break(cut)


PLAIN = ChainAppender()
"""Unkeyed, and a break is only recorded in the chain (the router's own appender also raises the alarm)."""


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


def _like_literal(text: bytes) -> str:
    return text.decode().replace("!", "!!").replace("%", "!%").replace("_", "!_")


def list_events(database: Database, where: AuditFilter) -> list[dict[str, Any]]:
    """Matching decisions, newest first (at most ``limit``): a folded row gives one entry per decision it holds,
    each with the row's ``seq`` and hashes."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.since is not None:
        clauses.append("ts >= ?")
        params.append(where.since)
    if where.until is not None:
        clauses.append("ts < ?")
        params.append(where.until)
    for name in ("agent", "role", "action"):
        value = getattr(where, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    if where.tool is not None:  # its own row, or a folded row listing it (see audit_rows)
        clauses.append("(tool = ? OR (tool IS NULL AND extra LIKE ? ESCAPE '\\'))")
        params += [where.tool, audit_rows.tool_in_extra(where.tool)]
    if where.request_id is not None:
        # The router's own id, or the caller's x-request-id (kept in the hashed extra, as sorted compact JSON).
        clauses.append("(request_id = ? OR extra LIKE ? ESCAPE '!')")
        params += [where.request_id, f'%"client_request_id":{_like_literal(orjson.dumps(where.request_id))}%']
    condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    limit = max(1, min(int(where.limit), 100_000))
    rows = database.fetchall(f"SELECT {', '.join(FIELDS)}, prev_hash, hash FROM audit_events{condition} "
                             f"ORDER BY seq DESC LIMIT {limit}", params)
    entries = [entry for row in rows for entry in audit_rows.expand(row)]
    if where.tool is not None:
        entries = [entry for entry in entries if entry["tool"] == where.tool]
    return entries[:limit]
