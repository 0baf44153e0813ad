"""``agent-router audit verify|list``: check the audit trail's hash chain, and query it, from the database.

Works against ``--database-url`` (default ``$AGENT_ROUTER_DATABASE_URL``, else ``sqlite:///agent-router.db``).
``verify`` exits 0 when the chain is intact, 1 naming the first missing or altered row otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from router.commands.records_db import existing_database
from router.ledger import audit_chain, render
from router.ledger.schema import migrate
from router.ledger.timerange import TimeRangeError, iso, parse_bound
from router.store.database import DatabaseUnavailable

Handler = Callable[[argparse.Namespace], int]

LIST_COLUMNS = ["seq", "time", "request_id", "agent", "role", "model", "tool", "action", "stage", "rule", "reason"]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("audit", help="verify and query the audit trail")
    actions = parser.add_subparsers(dest="audit_action", required=True)
    verify = actions.add_parser("verify", help="walk the hash chain; exit 1 at the first broken row")
    listing = actions.add_parser("list", help="policy decisions, newest first")
    listing.add_argument("--from", dest="since", help="start (inclusive): 2026-11-01, 2026-11-01T12:00:00Z, epoch")
    listing.add_argument("--to", dest="until", help="end (exclusive; a date alone includes that whole day)")
    for name in ("agent", "role", "tool", "action"):
        listing.add_argument(f"--{name}", help=f"only this {name}")
    listing.add_argument("--request-id", help="only this request")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    for action in (verify, listing):
        action.add_argument("--database-url", help="records database (default: $AGENT_ROUTER_DATABASE_URL, "
                                                   "else sqlite:///agent-router.db)")
    return {"audit": run}


def filter_from(values: dict[str, Any]) -> audit_chain.AuditFilter:
    """Filters from CLI arguments or query parameters (raises TimeRangeError on a bad time)."""
    return audit_chain.AuditFilter(
        since=parse_bound(values.get("since")), until=parse_bound(values.get("until"), end=True),
        agent=values.get("agent"), role=values.get("role"), tool=values.get("tool"), action=values.get("action"),
        request_id=values.get("request_id"), limit=int(values.get("limit") or 100))


def with_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "time": iso(float(row["ts"]))} for row in rows]


def run(args: argparse.Namespace) -> int:
    try:
        where = filter_from(vars(args)) if args.audit_action == "list" else None
    except TimeRangeError as exc:
        print(f"agent-router audit: {exc}", file=sys.stderr)
        return 2
    database = existing_database(args.database_url)
    try:
        migrate(database)
        if where is None:
            result = audit_chain.verify(database)
        else:
            rows = with_time(audit_chain.list_events(database, where))
    except DatabaseUnavailable as exc:
        print(f"agent-router audit: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
    if where is None:
        if result.ok:
            print(f"audit chain intact: {result.checked} events verified")
            return 0
        print(f"audit chain BROKEN after {result.checked} good events: {result.problem}", file=sys.stderr)
        return 1
    text = render.json_text(rows) if args.format == "json" else render.table(rows, LIST_COLUMNS)
    sys.stdout.write(text)
    return 0
