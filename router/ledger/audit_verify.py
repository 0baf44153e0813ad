"""Verify the audit chain: every row in order, its hash (plain or HMAC), the head, recorded breaks, anchors.

Three outcomes: intact; broken (the first missing, altered, re-chained or downgraded row, a head that
disagrees with the table, an unacknowledged break, an anchor the chain no longer holds); or unverifiable
(HMAC-keyed rows but not their key), which is never reported as intact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.ledger.audit_anchor import Anchor
from router.ledger.audit_chain import (
    ACK_ACTION,
    AUDIT_STAGE,
    BREAK_ACTION,
    FIELDS,
    GENESIS,
    hash_of_stored,
    head_problem,
)
from router.ledger.audit_key import AuditKey
from router.store.database import Database

_PAGE = 5000
_COLUMNS = ", ".join((*FIELDS, "key_id", "prev_hash", "hash"))


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None
    """The first row found missing, altered or out of chain."""
    unverifiable: bool = False
    """Nothing was found wrong, but part of the chain could not be checked (``problem`` says which)."""
    notes: tuple[str, ...] = ()
    """What was checked how: plain and keyed spans, acknowledged breaks, anchors."""

    @property
    def status(self) -> str:
        return "intact" if self.ok else "unverifiable" if self.unverifiable else "broken"


@dataclass
class _Walk:
    """What the walk has seen so far."""

    keys: Mapping[str, AuditKey]
    anchors: dict[int, list[Anchor]]
    expected_seq: int = 1
    prev: str = GENESIS
    plain: int = 0
    keyed: dict[str, list[int]] = field(default_factory=dict)
    """Key id -> [first seq, last seq] of the rows sealed with it."""
    unchecked: dict[str, list[int]] = field(default_factory=dict)
    breaks: dict[int, str] = field(default_factory=dict)
    acknowledged: dict[int, int] = field(default_factory=dict)
    anchored: int = 0

    def row(self, row: dict[str, Any]) -> tuple[str, int] | None:
        """Check one row; (problem, seq) when it breaks the chain."""
        seq, expected = int(row["seq"]), self.expected_seq
        if seq != expected:
            span = f"rows {expected}..{seq - 1} are" if seq - 1 > expected else f"row {expected} is"
            return f"seq {expected}: missing ({span} absent)", expected
        if row["prev_hash"] != self.prev:
            return (f"seq {seq}: its prev_hash does not match the hash of row {seq - 1} (row {seq - 1} was altered "
                    "or replaced)"), seq - 1
        key_id = row["key_id"]
        if key_id is None:
            if self.keyed or self.unchecked:
                return (f"seq {seq}: a plain sha256 row after HMAC-keyed rows (the chain was re-chained from here "
                        "without the key)"), seq
            self.plain += 1
            if hash_of_stored(self.prev, row, None) != row["hash"]:
                return f"seq {seq}: altered (its contents no longer match its hash)", seq
        elif key_id in self.keys:
            _span(self.keyed, key_id, seq)
            if hash_of_stored(self.prev, row, self.keys[key_id]) != row["hash"]:
                return f"seq {seq}: altered (its contents no longer match its HMAC, key id {key_id})", seq
        else:
            _span(self.unchecked, key_id, seq)
        for anchor in self.anchors.get(seq, ()):
            if anchor.hash != row["hash"]:
                return f"seq {seq}: not the row {anchor.describe()} (the chain was rewritten up to here)", seq
            self.anchored += 1
        if row["stage"] == AUDIT_STAGE:
            self._chain_event(seq, row)
        self.prev, self.expected_seq = row["hash"], seq + 1
        return None

    def _chain_event(self, seq: int, row: dict[str, Any]) -> None:
        if row["action"] == BREAK_ACTION:
            self.breaks[seq] = str(row["reason"])
        elif row["action"] == ACK_ACTION:
            try:
                target = int(orjson.loads(row["extra"] or "{}")["break_seq"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                return
            if target in self.breaks:
                self.acknowledged.setdefault(target, seq)


def _span(spans: dict[str, list[int]], key_id: str, seq: int) -> None:
    spans.setdefault(key_id, [seq, seq])[1] = seq


def verify(database: Database, keys: Iterable[AuditKey] = (), anchors: Iterable[Anchor] = ()) -> Verification:
    """Walk the whole chain in order; stop at the first missing, altered or re-chained row."""
    by_seq: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        by_seq.setdefault(anchor.seq, []).append(anchor)
    walk = _Walk({key.key_id: key for key in keys}, by_seq)
    while True:
        rows = database.fetchall(f"SELECT {_COLUMNS} FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT {_PAGE}",
                                 (walk.expected_seq,))
        for row in rows:
            found = walk.row(row)
            if found is not None:
                return Verification(False, walk.expected_seq - 1, found[0], found[1])
        if len(rows) == _PAGE:
            continue
        head = database.fetchone("SELECT seq, hash FROM audit_head WHERE id = 1")
        at_head = (int(head["seq"]), str(head["hash"])) if head else None
        if not (rows and at_head is not None and at_head[0] >= walk.expected_seq):
            break  # else a live router appended while we walked: walk on to the head read
    return _conclusion(walk, at_head)


def _conclusion(walk: _Walk, at_head: tuple[int, str] | None) -> Verification:
    """After a clean walk: the head (read after the last row), anchors beyond the end, breaks, and what could not
    be checked."""
    checked, end = walk.expected_seq - 1, walk.expected_seq - 1
    if at_head is not None and at_head[0] > end:
        return Verification(False, checked, f"seq {end + 1}: missing (the chain head says the last row is seq "
                            f"{at_head[0]}, the table ends at seq {end})", end + 1)
    problem = head_problem(at_head, (end, walk.prev) if end else None)
    if problem is not None:
        return Verification(False, checked, problem, end)
    beyond = [anchor for seq, listed in walk.anchors.items() if seq > end for anchor in listed]
    if beyond:
        latest = max(beyond, key=lambda anchor: anchor.seq)
        return Verification(False, checked, f"the chain ends at seq {end}, but {latest.describe()}: rows were "
                            "deleted (the database went backwards)", end + 1)
    if walk.keys and end and not walk.keyed and not walk.unchecked:
        return Verification(False, checked, "no row is HMAC-keyed although a key was given: the router has not "
                            "written with this key yet, or the chain was re-chained without it", None)
    open_breaks = [seq for seq in walk.breaks if seq not in walk.acknowledged]
    if open_breaks:
        seq = open_breaks[0]
        return Verification(False, checked, f"seq {seq}: a chain break recorded by the router: {walk.breaks[seq]} "
                            "(acknowledge it with POST /admin/audit/acknowledge once investigated)", seq)
    notes = _notes(walk)
    if walk.unchecked:
        spans = "; ".join(f"rows {first}..{last} (key id {key_id})" for key_id, (first, last) in
                          walk.unchecked.items())
        given = f" (the key given has id {', '.join(walk.keys)})" if walk.keys else ""
        return Verification(False, checked, f"HMAC-keyed rows not checked, their key was not given: {spans}{given}; "
                            "set AGENT_ROUTER_AUDIT_KEY (or --key-file) to the key with that id", None, True, notes)
    return Verification(True, checked, notes=notes)


def _notes(walk: _Walk) -> tuple[str, ...]:
    notes = []
    if walk.plain and (walk.keyed or walk.unchecked):
        notes.append(f"rows 1..{walk.plain} plain sha256 (written before the audit key was set)")
    notes += [f"rows {first}..{last} HMAC-SHA256, key id {key_id}" for key_id, (first, last) in walk.keyed.items()]
    notes += [f"seq {seq}: chain break ({reason}), acknowledged at seq {walk.acknowledged[seq]}"
              for seq, reason in walk.breaks.items() if seq in walk.acknowledged]
    if walk.anchors:
        notes.append(f"{walk.anchored} anchors matched (up to seq {max(walk.anchors)})")
    return tuple(notes)
