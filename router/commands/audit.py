"""``agent-router audit verify|list``: check the audit trail's hash chain, and query it, from the database.

Works against ``--database-url`` (default ``$AGENT_ROUTER_DATABASE_URL``, else ``sqlite:///agent-router.db``).
``verify`` exits 0 when the chain is intact, 1 naming the first missing or altered row (or a head, break or
anchor that shows a cut) otherwise, and 3 when it could not check everything: HMAC-keyed rows without their key
(``$AGENT_ROUTER_AUDIT_KEY`` or ``--key-file``), or an anchor that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import orjson

from router.commands.records_db import existing_database, run_report
from router.ledger import audit_chain, audit_verify, render
from router.ledger.audit_anchor import Anchor, AnchorError, read_source
from router.ledger.audit_key import AuditKey
from router.ledger.schema import migrate
from router.ledger.shadow_report import COLUMNS as SHADOW_COLUMNS
from router.ledger.shadow_report import shadow_report, table_rows
from router.ledger.timerange import TimeRangeError, iso, parse_bound
from router.settings import Settings, load_settings
from router.store.database import DatabaseUnavailable

Handler = Callable[[argparse.Namespace], int]

LIST_COLUMNS = ["seq", "time", "request_id", "client_request_id", "agent", "role", "model", "tool", "action", "stage",
                "rule", "reason"]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("audit", help="verify and query the audit trail")
    actions = parser.add_subparsers(dest="audit_action", required=True)
    verify = actions.add_parser("verify", help="walk the hash chain; exit 1 at the first broken row, 3 when "
                                "part of it could not be checked")
    verify.add_argument("--key-file", help="file holding the audit key (default: $AGENT_ROUTER_AUDIT_KEY)")
    verify.add_argument("--anchor", action="append", default=[], metavar="FILE|redis://...",
                        help="check the chain still holds the published head(s): an anchor file, or the Redis "
                             "key <$AGENT_ROUTER_REDIS_PREFIX>audit:anchor (repeatable)")
    listing = actions.add_parser("list", help="policy decisions, newest first")
    listing.add_argument("--from", dest="since", help="start (inclusive): 2026-11-01, 2026-11-01T12:00:00Z, epoch")
    listing.add_argument("--to", dest="until", help="end (exclusive; a date alone includes that whole day)")
    for name in ("agent", "role", "tool", "action"):
        listing.add_argument(f"--{name}", help=f"only this {name}")
    listing.add_argument("--request-id", help="only this request: the router's id (x-agent-router-request-id, the "
                         "one error messages name) or the caller's x-request-id (every agent's requests that sent "
                         "it, each row with its agent)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    report = actions.add_parser("report", help="what rules in shadow would have changed (--shadow)")
    report.add_argument("--shadow", action="store_true", required=True,
                        help="summarise the would_deny decisions of rules in shadow, by plane, role, tool and rule")
    report.add_argument("--from", dest="since", help="start (inclusive): 2026-11-01, 2026-11-01T12:00:00Z, epoch")
    report.add_argument("--to", dest="until", help="end (exclusive; a date alone includes that whole day)")
    report.add_argument("--format", choices=render.FORMATS, default="table")
    for action in (verify, listing, report):
        action.add_argument("--database-url", help="records database (default: $AGENT_ROUTER_DATABASE_URL, "
                                                   "else sqlite:///agent-router.db)")
    return {"audit": run}


def render_shadow(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return render.json_text(report)
    rows = table_rows(report)
    if fmt == "csv":
        return render.csv_text(rows, SHADOW_COLUMNS)
    note = "\n(more shadow decisions than one report reads: narrow --from/--to)\n" if report["truncated"] else ""
    return render.table(rows, SHADOW_COLUMNS) + note


def filter_from(values: dict[str, Any]) -> audit_chain.AuditFilter:
    """Filters from CLI arguments or query parameters (raises TimeRangeError on a bad time)."""
    return audit_chain.AuditFilter(
        since=parse_bound(values.get("since")), until=parse_bound(values.get("until"), end=True),
        agent=values.get("agent"), role=values.get("role"), tool=values.get("tool"), action=values.get("action"),
        request_id=values.get("request_id"), limit=int(values.get("limit") or 100))


def with_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as shown: with their time, and the caller's request id read from the hashed ``extra``."""
    return [{**row, "time": iso(float(row["ts"])), "client_request_id": _client_id(row.get("extra"))} for row in rows]


def _client_id(extra: Any) -> str | None:
    if not extra or "client_request_id" not in extra:
        return None
    try:
        value = orjson.loads(extra).get("client_request_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def run(args: argparse.Namespace) -> int:
    if args.audit_action == "report":
        return run_report("audit report", lambda: [], args.since, args.until, args.database_url,
                          lambda database, since, until, _: shadow_report(database, since, until),
                          lambda report: render_shadow(report, args.format))
    try:
        where = filter_from(vars(args)) if args.audit_action == "list" else None
    except TimeRangeError as exc:
        print(f"agent-router audit: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    if where is None:
        try:
            keys, anchors = _keys(args, settings), _anchors(args, settings)
        except (OSError, ValueError, AnchorError) as exc:
            print(f"agent-router audit verify: {exc}", file=sys.stderr)
            return 3
    database = existing_database(args.database_url)
    try:
        migrate(database)
        if where is None:
            result = audit_verify.verify(database, keys, anchors)
        else:
            rows = with_time(audit_chain.list_events(database, where))
    except DatabaseUnavailable as exc:
        print(f"agent-router audit: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
    if where is None:
        return _report(result)
    text = render.json_text(rows) if args.format == "json" else render.table(rows, LIST_COLUMNS)
    sys.stdout.write(text)
    return 0


def _keys(args: argparse.Namespace, settings: Settings) -> list[AuditKey]:
    if args.key_file:
        with open(args.key_file, "rb") as file:
            return [AuditKey(file.read().strip())]
    return [AuditKey(settings.audit_key.get_secret_value())] if settings.audit_key is not None else []


def _anchors(args: argparse.Namespace, settings: Settings) -> list[Anchor]:
    return [anchor for source in args.anchor for anchor in read_source(source, settings.redis_prefix)]


def _report(result: audit_verify.Verification) -> int:
    for note in result.notes:
        print(f"  {note}")
    if result.ok:
        print(f"audit chain intact: {result.checked} events verified")
        return 0
    if result.unverifiable:
        print(f"audit chain NOT VERIFIED ({result.checked} events walked): {result.problem}", file=sys.stderr)
        return 3
    print(f"audit chain BROKEN after {result.checked} good events: {result.problem}", file=sys.stderr)
    return 1
