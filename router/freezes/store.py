"""The ``freezes`` table in the records database: freeze, unfreeze and list; each change is chained into the audit
trail inside the same transaction, so a freeze is never in force without its audit event (nor the reverse).

Synchronous, like :mod:`router.keys.store`: the server calls it through ``await db.run(...)``, the CLI directly.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from router.keys.material import to_text
from router.ledger.audit_chain import ChainAppender
from router.store.database import Database

Kind = Literal["agent", "role"]
KINDS: tuple[Kind, ...] = ("agent", "role")

MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS freezes ("
    " kind TEXT NOT NULL, name TEXT NOT NULL, reason TEXT, frozen_at TEXT NOT NULL, frozen_by TEXT NOT NULL,"
    " PRIMARY KEY (kind, name))",
]

_COLUMNS = "kind, name, reason, frozen_at, frozen_by"


@dataclass(frozen=True, slots=True)
class FreezeRow:
    """One freeze in force: ``kind`` is ``agent`` or ``role``; ``frozen_by`` says who (``cli:<user>``,
    ``admin-api``)."""

    kind: str
    name: str
    reason: str | None
    frozen_at: str
    frozen_by: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


def migrate(db: Database) -> None:
    db.migrate("freezes", MIGRATIONS)


def list_freezes(db: Database) -> list[FreezeRow]:
    rows = db.fetchall(f"SELECT {_COLUMNS} FROM freezes ORDER BY kind, name")
    return [FreezeRow(**row) for row in rows]


def audit_event(action: str, kind: str, name: str, reason: str | None, by: str) -> dict[str, Any]:
    """The audit event of a freeze or unfreeze (``stage`` admin; who did it in ``extra``)."""
    return {"ts": time.time(), "request_id": f"{action}-{uuid.uuid4().hex[:16]}",
            "agent": name if kind == "agent" else None, "role": name if kind == "role" else None,
            "model": None, "tool": None, "action": action, "stage": "admin", "rule": f"{kind}:{name}",
            "reason": reason, "policy_version": None, "by": by}


def freeze(db: Database, kind: Kind, name: str, reason: str | None, by: str,
           audit: ChainAppender) -> tuple[FreezeRow, bool]:
    """Freeze ``kind:name``; return its row and whether it is new (freezing again keeps the first freeze)."""
    with db.transaction() as cursor:
        cursor.execute(db.sql(f"SELECT {_COLUMNS} FROM freezes WHERE kind = ? AND name = ?"), (kind, name))
        found = cursor.fetchone()
        if found is not None:
            return FreezeRow(*found), False
        row = FreezeRow(kind, name, reason, to_text(datetime.now(UTC)) or "", by)
        cursor.execute(db.sql(f"INSERT INTO freezes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"),
                       (row.kind, row.name, row.reason, row.frozen_at, row.frozen_by))
        audit.append(db, cursor, [audit_event("freeze", kind, name, reason, by)])
        return row, True


def unfreeze(db: Database, kind: Kind, name: str, by: str, audit: ChainAppender) -> FreezeRow | None:
    """Lift the freeze of ``kind:name``; return the row lifted, None when it was not frozen (nothing audited)."""
    with db.transaction() as cursor:
        cursor.execute(db.sql(f"SELECT {_COLUMNS} FROM freezes WHERE kind = ? AND name = ?"), (kind, name))
        found = cursor.fetchone()
        if found is None:
            return None
        cursor.execute(db.sql("DELETE FROM freezes WHERE kind = ? AND name = ?"), (kind, name))
        row = FreezeRow(*found)
        audit.append(db, cursor, [audit_event("unfreeze", kind, name, row.reason, by)])
        return row
