"""Anchors: the chain's head (seq, hash) published outside the database, so that a rewritten or truncated chain
shows even to someone who trusts nothing in the database.

An anchor is one JSON object: ``{"seq", "hash", "key_id", "ts", "time"}``. The router appends one line per new
head to ``AGENT_ROUTER_AUDIT_ANCHOR_FILE`` (fsynced) and/or sets the Redis key ``<prefix>audit:anchor``; the
log line ``audit anchor: seq=... hash=...`` carries the same. ``agent-router audit verify --anchor`` reads them
back (see ``audit_verify``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from router.ledger.audit_chain import GENESIS, head_problem
from router.ledger.timerange import iso
from router.store.database import Database

REDIS_KEY = "audit:anchor"
"""Under the router's Redis prefix."""
_TAIL_BYTES = 4096
_HEAD_AND_LAST = """
SELECT h.seq AS head_seq, h.hash AS head_hash, h.open_break, t.seq AS last_seq, t.hash AS last_hash, t.key_id
FROM (SELECT 1 AS one) AS o
LEFT JOIN audit_head AS h ON h.id = 1
LEFT JOIN (SELECT seq, hash, key_id FROM audit_events ORDER BY seq DESC LIMIT 1) AS t ON 1 = 1
"""
"""The head row and the last row in one statement, so one snapshot: another replica's append cannot fall
between the two reads and pass for a cut."""


class AnchorError(Exception):
    """An anchor source cannot be read, or holds something that is not an anchor."""


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int
    hash: str
    key_id: str | None
    ts: float

    def to_json(self) -> str:
        return orjson.dumps({"seq": self.seq, "hash": self.hash, "key_id": self.key_id, "ts": self.ts,
                             "time": iso(self.ts)}).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Anchor:
        try:
            value = orjson.loads(text)
            anchor = cls(int(value["seq"]), str(value["hash"]), value.get("key_id"), float(value["ts"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise AnchorError(f"not an anchor ({type(exc).__name__})") from None
        if anchor.seq < 0 or len(anchor.hash) != len(GENESIS):
            raise AnchorError("not an anchor (bad seq or hash)")
        return anchor

    def describe(self) -> str:
        return f"seq {self.seq} anchored at {iso(self.ts)}"


@dataclass(frozen=True, slots=True)
class HeadState:
    """What the database says now: its last row as an anchor, and why the chain cannot be trusted, if so."""

    anchor: Anchor
    problem: str | None = None
    publishable: bool = True
    """False when the head itself is in doubt (it disagrees with the table, or with the last anchor)."""


def read_head(database: Database) -> HeadState:
    """The table's last row (the head to publish), checked against the head row and its open-break flag."""
    found = database.fetchone(_HEAD_AND_LAST)
    assert found is not None
    last = found["last_seq"] is not None
    anchor = Anchor(int(found["last_seq"]), str(found["last_hash"]), found["key_id"], time.time()) if last \
        else Anchor(0, GENESIS, None, time.time())
    head = (int(found["head_seq"]), str(found["head_hash"])) if found["head_seq"] is not None else None
    problem = head_problem(head, (anchor.seq, anchor.hash) if last else None)
    if problem is not None:
        return HeadState(anchor, problem, publishable=False)
    if found["open_break"] is not None:
        return HeadState(anchor, f"a chain break is recorded at seq {found['open_break']} and not acknowledged "
                         "(see agent-router audit verify)")
    return HeadState(anchor)


def contradiction(database: Database, anchor: Anchor) -> str | None:
    """Why the database no longer holds ``anchor`` (it went backwards, or that row was replaced); None if it does."""
    row = database.fetchone("SELECT hash FROM audit_events WHERE seq = ?", (anchor.seq,))
    if anchor.seq == 0 or (row is not None and row["hash"] == anchor.hash):
        return None
    if row is None:
        last = database.fetchone("SELECT MAX(seq) AS seq FROM audit_events")
        end = last["seq"] if last and last["seq"] is not None else 0
        return f"the chain ends at seq {end}, but {anchor.describe()}: rows were deleted (the database went backwards)"
    return f"seq {anchor.seq} is not the row {anchor.describe()}: the chain was rewritten up to there"


def append_to_file(path: str, anchor: Anchor) -> None:
    """One JSON line, appended and fsynced (several workers may append to the same file)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (anchor.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: str) -> list[Anchor]:
    try:
        with open(path, "rb") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise AnchorError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [_parsed(line, f"{path} line {number}") for number, line in enumerate(lines, 1) if line.strip()]


def last_in_file(path: str) -> Anchor | None:
    """The file's last anchor (read from its tail); None when the file does not exist yet or is empty."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - _TAIL_BYTES))
            lines = [line for line in file.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AnchorError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _parsed(lines[-1], f"{path} (last line)") if lines else None


def read_redis(url: str, key: str) -> list[Anchor]:
    import redis

    try:
        client: Any = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            value = client.get(key)
        finally:
            client.close()
    except redis.RedisError as exc:
        raise AnchorError(f"cannot read Redis key {key}: {type(exc).__name__}") from None
    if value is None:
        raise AnchorError(f"no anchor at Redis key {key}")
    return [_parsed(value, f"Redis key {key}")]


def read_source(source: str, redis_prefix: str) -> list[Anchor]:
    """Anchors from a file path or a ``redis://`` / ``rediss://`` URL (key ``<redis_prefix>audit:anchor``)."""
    if source.startswith(("redis://", "rediss://", "unix://")):
        anchors = read_redis(source, redis_prefix + REDIS_KEY)
    else:
        anchors = read_file(source)
    if not anchors:
        raise AnchorError(f"no anchor in {source}")
    return anchors


def _parsed(line: str | bytes, where: str) -> Anchor:
    try:
        return Anchor.from_json(line)
    except AnchorError as exc:
        raise AnchorError(f"{where}: {exc}") from None
