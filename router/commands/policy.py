"""``agent-router policy replay``: the recorded tool decisions of a time range, decided again under another
config, and what would change (see ``router.policy.replay``). Reads the records database; exit 1 when a
decision would change, so a team can gate a policy change in its own CI; 0 when nothing would."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from router.commands.records_db import existing_database
from router.config import ConfigError, load_snapshot
from router.ledger import audit_chain, render
from router.ledger.schema import migrate
from router.ledger.timerange import TimeRangeError, parse_bound, ts_clauses
from router.policy.replay import Recorded, from_audit, from_mcp_calls, replay
from router.store.database import Database, DatabaseUnavailable

Handler = Callable[[argparse.Namespace], int]
MAX_DECISIONS = 200_000
COLUMNS = ["plane", "role", "tool", "before", "after", "new_rule", "decisions", "examples"]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("policy", help="tool policy: replay recorded decisions against a new config")
    actions = parser.add_subparsers(dest="policy_action", required=True)
    play = actions.add_parser("replay", help="what a new config would change in the decisions of a time range")
    play.add_argument("--config", required=True, help="the new config file")
    play.add_argument("--from", dest="since", help="start (inclusive): 2026-11-01, 2026-11-01T12:00:00Z, epoch")
    play.add_argument("--to", dest="until", help="end (exclusive; a date alone includes that whole day)")
    play.add_argument("--format", choices=("table", "json"), default="table")
    play.add_argument("--database-url", help="records database (default: $AGENT_ROUTER_DATABASE_URL, "
                                             "else sqlite:///agent-router.db)")
    return {"policy": run}


def recorded(database: Database, since: float | None, until: float | None) -> list[Recorded]:
    events = audit_chain.list_events(database, audit_chain.AuditFilter(since=since, until=until,
                                                                       limit=MAX_DECISIONS))
    clauses, params = ts_clauses(since, until)
    clauses, params = ["method = ?", *clauses], ["tools/call", *params]
    columns = ("request_id", "role", "server", "tool", "method", "decision", "rule", "arguments")
    rows = database.fetchall(f"SELECT {', '.join(columns)} FROM mcp_calls WHERE {' AND '.join(clauses)} "
                             f"ORDER BY ts LIMIT {MAX_DECISIONS}", params)
    return from_audit(events) + from_mcp_calls(rows)


def run(args: argparse.Namespace) -> int:
    try:
        since, until = parse_bound(args.since), parse_bound(args.until, end=True)
    except TimeRangeError as exc:
        print(f"agent-router policy: {exc}", file=sys.stderr)
        return 2
    try:
        snapshot = load_snapshot(args.config)
    except ConfigError as exc:
        print(f"agent-router policy: the new config is refused:\n{exc}", file=sys.stderr)
        return 2
    database = existing_database(args.database_url)
    try:
        migrate(database)
        decisions = recorded(database, since, until)
    except DatabaseUnavailable as exc:
        print(f"agent-router policy: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
    report = replay(snapshot, decisions)
    if args.format == "json":
        sys.stdout.write(render.json_text(report))
    else:
        rows = [{**change, "examples": " ".join(map(str, change["examples"]))} for change in report["changes"]]
        sys.stdout.write(f"{report['decisions']} decisions replayed, {report['changed']} would change\n")
        if rows:
            sys.stdout.write(render.table(rows, COLUMNS))
    return 1 if report["changed"] else 0
