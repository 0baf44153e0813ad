"""``agent-router agents freeze|unfreeze|frozen``: the kill switch from a shell, no server needed.

Works against ``--database-url`` (the durable record; each change audited in the hash chain, sealed with
``AGENT_ROUTER_AUDIT_KEY`` when set) and, with ``--redis-url`` or ``AGENT_ROUTER_REDIS_URL``, the fleet's shared
freeze map, so every replica refuses within a second. A freeze Redis could not take still reaches every replica
at its next database read; an unfreeze Redis cannot take is refused (the name stays frozen everywhere).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from typing import Any

import orjson

from router.commands.records_db import existing_database, open_database
from router.freezes import shared, store
from router.freezes.store import Kind
from router.ledger.audit_chain import ChainAppender
from router.ledger.audit_key import AuditKey
from router.ledger.schema import migrate as migrate_ledger
from router.settings import Settings, load_settings
from router.store.counters import CountersUnavailable, RedisCounters
from router.store.database import Database, DatabaseUnavailable

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("agents", help="freeze and unfreeze agents or roles (the kill switch)")
    actions = parser.add_subparsers(dest="agents_action", required=True)
    freeze = actions.add_parser("freeze", help="refuse every key of an agent (or of every agent of a role)")
    unfreeze = actions.add_parser("unfreeze", help="lift a freeze")
    for action in (freeze, unfreeze):
        action.add_argument("name", nargs="?", metavar="NAME", help="the agent")
        action.add_argument("--role", help="a role instead of an agent")
    freeze.add_argument("--reason", help="why (shown to the refused agent and kept in the audit trail)")
    frozen = actions.add_parser("frozen", help="list the frozen agents and roles")
    frozen.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    for action in (freeze, unfreeze, frozen):
        action.add_argument("--database-url", help="records database (default: $AGENT_ROUTER_DATABASE_URL, "
                                                   "else sqlite:///agent-router.db)")
        action.add_argument("--redis-url", help="the fleet's Redis (default: $AGENT_ROUTER_REDIS_URL; none: "
                                                "replicas see the change at their next database read)")
    return {"agents": run}


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    action = args.agents_action
    target = None
    if action != "frozen":
        if (args.name is None) == (args.role is None):
            print(f"agent-router agents {action}: give an agent NAME or --role ROLE (one of them)", file=sys.stderr)
            return 2
        target = ("agent", args.name) if args.name is not None else ("role", args.role)
    database = open_database(args.database_url) if action == "freeze" else existing_database(args.database_url)
    try:
        store.migrate(database)
        if target is None:
            return _list(args, database)
        migrate_ledger(database)
        audit = ChainAppender(AuditKey(settings.audit_key.get_secret_value()) if settings.audit_key else None)
        redis_url = args.redis_url or settings.redis_url
        kind: Kind = "agent" if target[0] == "agent" else "role"
        if action == "freeze":
            return _freeze(args, database, audit, redis_url, settings, kind, target[1])
        return _unfreeze(database, audit, redis_url, settings, kind, target[1])
    except DatabaseUnavailable as exc:
        print(f"agent-router agents: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()


def _by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (a container without one)
        return "cli"


def _freeze(args: argparse.Namespace, database: Database, audit: ChainAppender, redis_url: str | None,
            settings: Settings, kind: Kind, name: str) -> int:
    row, new = store.freeze(database, kind, name, args.reason, _by(), audit)
    print(f"{kind} {name!r} {'frozen' if new else 'was already frozen'} (since {row.frozen_at}) in "
          f"{database.describe()}")
    if redis_url:
        try:
            asyncio.run(_in_redis(redis_url, settings, lambda counters: shared.publish(counters, row)))
        except CountersUnavailable as exc:
            print(f"warning: the freeze was not published to Redis ({exc}); replicas still refuse within about "
                  f"a second, at their next database read", file=sys.stderr)
    return 0


def _unfreeze(database: Database, audit: ChainAppender, redis_url: str | None, settings: Settings, kind: Kind,
              name: str) -> int:
    if redis_url:
        try:
            asyncio.run(_in_redis(redis_url, settings, lambda counters: shared.withdraw(counters, kind, name)))
        except CountersUnavailable as exc:
            print(f"agent-router agents unfreeze: Redis cannot take the change ({exc}); {kind} {name!r} stays "
                  f"frozen: try again", file=sys.stderr)
            return 1
    row = store.unfreeze(database, kind, name, _by(), audit)
    if row is None:
        print(f"agent-router agents unfreeze: {kind} {name!r} is not frozen", file=sys.stderr)
        return 1
    print(f"{kind} {name!r} unfrozen (it was frozen since {row.frozen_at})")
    return 0


def _list(args: argparse.Namespace, database: Database) -> int:
    rows = store.list_freezes(database)
    if args.json:
        for row in rows:
            sys.stdout.buffer.write(orjson.dumps(row.public()) + b"\n")
        return 0
    header = ("KIND", "NAME", "FROZEN AT", "BY", "REASON")
    table = [header] + [(r.kind, r.name, r.frozen_at, r.frozen_by, r.reason or "-") for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


async def _in_redis(url: str, settings: Settings, change: Callable[[RedisCounters], Any]) -> None:
    counters = RedisCounters(url, settings.redis_prefix, timeout=2.0)
    try:
        await change(counters)
    finally:
        await counters.close()
