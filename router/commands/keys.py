"""``agent-router keys create|list|revoke``: manage agent API keys in the records database, no server needed.

Works against ``--database-url`` (default ``$AGENT_ROUTER_DATABASE_URL``, else ``sqlite:///agent-router.db`` in
the current directory); only ``create`` may create it, ``list`` and ``revoke`` refuse one that does not exist.
Revocations are also published to Redis when ``AGENT_ROUTER_REDIS_URL`` is set, so running replicas refuse the key
on their next request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

import orjson

from router.commands.records_db import existing_database, open_database
from router.config import ConfigError, load_snapshot
from router.keys import revocations, store
from router.keys.checks import KeyRequestError, role_for_new_key
from router.keys.listing import key_entries
from router.keys.material import parse_expiry
from router.settings import Settings, load_settings
from router.store.counters import CountersUnavailable, RedisCounters
from router.store.database import Database, DatabaseUnavailable

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("keys", help="create, list and revoke agent API keys")
    actions = parser.add_subparsers(dest="keys_action", required=True)
    create = actions.add_parser("create", help="create a key (printed once on standard output)")
    create.add_argument("--agent", required=True, help="the agent the key identifies")
    create.add_argument("--role", help="role for an agent not in the config (the config's role wins otherwise)")
    create.add_argument("--expires", help="2027-01-01, 2027-01-01T12:00:00Z or a duration: 30d, 12h, 90m, 2w")
    create.add_argument("--name", help="a label for people (which machine or deployment holds the key)")
    listing = actions.add_parser("list", help="list keys from the config and the database, with the role each "
                                              "gets (never the keys themselves)")
    listing.add_argument("--agent", help="only this agent's keys")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    revoke = actions.add_parser("revoke", help="revoke a key by id, id prefix or display prefix")
    revoke.add_argument("ref", metavar="KEY_ID_OR_PREFIX")
    for action in (create, listing, revoke):
        action.add_argument("--database-url", help="records database (default: $AGENT_ROUTER_DATABASE_URL, "
                                                   "else sqlite:///agent-router.db)")
        action.add_argument("--config", help="YAML config, to check roles (default: $AGENT_ROUTER_CONFIG, "
                                             "else built-in)")
    return {"keys": run}


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    action = args.keys_action
    # Only create may start a database; list and revoke read an existing one (an empty one would list nothing).
    database = open_database(args.database_url) if action == "create" else existing_database(args.database_url)
    try:
        store.migrate(database)
        return {"create": _create, "list": _list, "revoke": _revoke}[action](args, settings, database)
    except DatabaseUnavailable as exc:
        print(f"agent-router keys: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()


def _create(args: argparse.Namespace, settings: Settings, database: Database) -> int:
    try:
        snapshot = load_snapshot(args.config or settings.config)
    except ConfigError as exc:
        print(f"config refused:\n{exc}", file=sys.stderr)
        return 2
    try:
        role, warnings = role_for_new_key(snapshot, args.agent, args.role)
        expires = parse_expiry(args.expires) if args.expires else None
    except (KeyRequestError, ValueError) as exc:
        print(f"agent-router keys create: {exc}", file=sys.stderr)
        return 2
    key, row = store.create_key(database, args.agent, role, args.name, expires)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    effective = snapshot.agents[args.agent].role if args.agent in snapshot.agents else role
    print(f"created {row.id} for agent {row.agent!r} (role {effective!r}"
          f"{', expires ' + row.expires_at if row.expires_at else ''}) in {database.describe()}.\n"
          f"The key is shown only now; store it safely:", file=sys.stderr)
    print(key)
    return 0


def _list(args: argparse.Namespace, settings: Settings, database: Database) -> int:
    try:
        snapshot = load_snapshot(args.config or settings.config)
    except ConfigError as exc:
        print(f"config refused:\n{exc}", file=sys.stderr)
        return 2
    entries = key_entries(snapshot, store.list_keys(database, args.agent), args.agent)
    if args.json:
        for entry in entries:
            sys.stdout.buffer.write(orjson.dumps(entry) + b"\n")
        return 0
    header = ("ID", "PREFIX", "AGENT", "ROLE", "SOURCE", "NAME", "CREATED", "EXPIRES", "REVOKED")
    table = [header] + [(e["id"], e["prefix"] + "…" if e["prefix"] else "-", e["agent"], e["effective_role"] or "-",
                         e["source"], e["name"] or "-", e["created_at"] or "-", e["expires_at"] or "-",
                         e["revoked_at"] or "-") for e in entries]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def _revoke(args: argparse.Namespace, settings: Settings, database: Database) -> int:
    try:
        row = store.revoke_key(database, args.ref)
    except (store.KeyNotFound, store.AmbiguousKey) as exc:
        print(f"agent-router keys revoke: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {row.id} (agent {row.agent!r}) at {row.revoked_at}")
    if settings.redis_url:
        try:
            asyncio.run(_publish(settings, row))
        except CountersUnavailable as exc:
            print(f"warning: could not publish the revocation to Redis ({exc}); replicas still refuse the key "
                  f"within about a second, when they reload keys from the database", file=sys.stderr)
    return 0


async def _publish(settings: Settings, row: store.KeyRow) -> None:
    assert settings.redis_url is not None
    counters = RedisCounters(settings.redis_url, settings.redis_prefix, timeout=2.0)
    try:
        await revocations.publish(counters, row)
    finally:
        await counters.close()
