"""The fleet's fast copy of the freezes: one Redis map ``freezes`` (field ``<kind>:<name>``, value the row as
JSON), read whole by every replica a few times a second.

A map, not one key per freeze, so a replica reads every freeze in one round trip; per-field writes, so two
operators freezing at once never overwrite each other. The database stays the durable record: a replica treats
a name as frozen when either says so. Hence the order: freeze writes the database first, then here; unfreeze
clears here first, then the database (a failure in between leaves the name frozen, never half lifted).
"""

from __future__ import annotations

import orjson

from router.freezes.store import FreezeRow
from router.store.counters import Counters

MAP = "freezes"


def field(kind: str, name: str) -> str:
    return f"{kind}:{name}"


async def publish(counters: Counters, row: FreezeRow) -> None:
    """Raise CountersUnavailable when Redis cannot take it (replicas still see it at their next database read)."""
    await counters.put_field(MAP, field(row.kind, row.name), orjson.dumps(row.public()).decode())


async def withdraw(counters: Counters, kind: str, name: str) -> None:
    """Raise CountersUnavailable when Redis cannot take it: the caller must not lift the database row then."""
    await counters.delete_field(MAP, field(kind, name))


async def read(counters: Counters) -> list[FreezeRow]:
    """Every freeze Redis holds; an entry that does not parse is skipped. Raise CountersUnavailable."""
    rows = []
    for value in (await counters.fetch_fields(MAP)).values():
        try:
            data = orjson.loads(value)
            rows.append(FreezeRow(str(data["kind"]), str(data["name"]), data.get("reason"),
                                  str(data.get("frozen_at") or ""), str(data.get("frozen_by") or "")))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return rows
