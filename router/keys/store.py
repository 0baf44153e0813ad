"""The ``agent_keys`` table in the records database: create, list, find and revoke keys (hashes only).

Synchronous, like :class:`router.store.database.Database`: the server calls it through ``await db.run(...)``,
the CLI directly (no server needed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from router.keys.material import display_prefix, hash_key, new_key, new_key_id, to_text
from router.store.database import Database

MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS agent_keys ("
    " id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, agent TEXT NOT NULL,"
    " role TEXT, name TEXT, created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT);"
    "CREATE INDEX IF NOT EXISTS agent_keys_agent ON agent_keys (agent)",
]

_COLUMNS = "id, key_hash, prefix, agent, role, name, created_at, expires_at, revoked_at"


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One stored key. ``key_hash`` is ``sha256:<hex>``; ``prefix`` the first characters, for people."""

    id: str
    key_hash: str
    prefix: str
    agent: str
    role: str | None
    name: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None

    def public(self) -> dict[str, Any]:
        """What list endpoints show: everything but the hash."""
        data = asdict(self)
        data.pop("key_hash")
        return {"source": "database", **data}


class KeyNotFound(LookupError):
    pass


class AmbiguousKey(LookupError):
    pass


def migrate(db: Database) -> None:
    db.migrate("keys", MIGRATIONS)


def create_key(db: Database, agent: str, role: str | None, name: str | None,
               expires_at: datetime | None) -> tuple[str, KeyRow]:
    """Store a new key; return the key itself (shown once, never stored) and its row."""
    key = new_key()
    row = KeyRow(id=new_key_id(), key_hash=hash_key(key), prefix=display_prefix(key), agent=agent, role=role,
                 name=name, created_at=to_text(datetime.now(UTC)) or "", expires_at=to_text(expires_at),
                 revoked_at=None)
    db.execute(f"INSERT INTO agent_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [row.id, row.key_hash, row.prefix, row.agent, row.role, row.name, row.created_at, row.expires_at,
                row.revoked_at])
    return key, row


def list_keys(db: Database, agent: str | None = None) -> list[KeyRow]:
    if agent is None:
        rows = db.fetchall(f"SELECT {_COLUMNS} FROM agent_keys ORDER BY created_at, id")
    else:
        rows = db.fetchall(f"SELECT {_COLUMNS} FROM agent_keys WHERE agent = ? ORDER BY created_at, id", [agent])
    return [KeyRow(**row) for row in rows]


def find_key(db: Database, ref: str) -> KeyRow:
    """A key by its id, a unique prefix of its id, its display prefix, or the key itself."""
    ref = ref.strip()
    if not ref:
        raise KeyNotFound("no key id given")
    rows = list_keys(db)
    by_hash = [row for row in rows if row.key_hash == hash_key(ref)]
    exact = [row for row in rows if row.id == ref] or by_hash
    if exact:
        return exact[0]
    matches = [row for row in rows if row.id.startswith(ref) or _prefix_matches(row.prefix, ref)]
    if not matches:
        raise KeyNotFound(f"no key matches {ref!r}")
    if len(matches) > 1:
        raise AmbiguousKey(f"{ref!r} matches {len(matches)} keys ({', '.join(r.id for r in matches)}): give more "
                           f"characters")
    return matches[0]


def _prefix_matches(prefix: str, ref: str) -> bool:
    """A ref of the key's first characters: shorter or longer than the stored display prefix."""
    return len(ref) >= 4 and (prefix.startswith(ref) or ref.startswith(prefix))


def revoke_key(db: Database, ref: str) -> KeyRow:
    """Mark the key revoked (idempotent: an already revoked key keeps its first revocation time)."""
    row = find_key(db, ref)
    if row.revoked_at is not None:
        return row
    now = to_text(datetime.now(UTC))
    db.execute("UPDATE agent_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, row.id])
    return KeyRow(**{**asdict(row), "revoked_at": now})
