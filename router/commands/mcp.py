"""``agent-router mcp report``: MCP tool calls per group (decisions, errors, latency, result bytes), read
straight from the records database (``mcp_calls``; see ``router.ledger.mcp_reports``).

Works against ``--database-url`` (default ``$AGENT_ROUTER_DATABASE_URL``, else ``sqlite:///agent-router.db``),
which must exist, like ``usage report``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from router.commands.records_db import existing_database
from router.ledger import render
from router.ledger.mcp_reports import COLUMNS_SHOWN, DEFAULT_GROUP_BY, GROUP_KEYS, mcp_report, parse_group_by
from router.ledger.reports import ReportError
from router.ledger.schema import migrate
from router.ledger.timerange import TimeRangeError, parse_bound
from router.store.database import DatabaseUnavailable

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("mcp", help="the MCP tool plane's records")
    actions = parser.add_subparsers(dest="mcp_action", required=True)
    report = actions.add_parser("report", help="tool calls, decisions, errors and latency per group")
    report.add_argument("--since", "--from", dest="since",
                        help="start (inclusive): 2026-11-01, 2026-11-01T12:00:00Z, epoch")
    report.add_argument("--until", "--to", dest="until", help="end (exclusive; a date alone includes that whole day)")
    report.add_argument("--by", default=",".join(DEFAULT_GROUP_BY),
                        help=f"comma-separated: {', '.join(GROUP_KEYS)} (default: {','.join(DEFAULT_GROUP_BY)})")
    report.add_argument("--format", choices=render.FORMATS, default="table")
    report.add_argument("--database-url", help="records database (default: $AGENT_ROUTER_DATABASE_URL, "
                                               "else sqlite:///agent-router.db)")
    return {"mcp": run}


def render_report(report: dict[str, Any], fmt: str) -> str:
    """The report as JSON, CSV (one line per group) or a table (with a TOTAL line)."""
    if fmt == "json":
        return render.json_text(report)
    columns = list(report["group_by"]) + COLUMNS_SHOWN
    rows = list(report["groups"])
    if fmt == "csv":
        return render.csv_text(rows, columns)
    total = {**report["totals"], columns[0]: "TOTAL"}
    return render.table([*rows, total], columns)


def run(args: argparse.Namespace) -> int:
    try:
        group_by = parse_group_by(args.by)
        since, until = parse_bound(args.since), parse_bound(args.until, end=True)
    except (ReportError, TimeRangeError) as exc:
        print(f"agent-router mcp: {exc}", file=sys.stderr)
        return 2
    database = existing_database(args.database_url)
    try:
        migrate(database)
        report = mcp_report(database, since, until, group_by)
    except DatabaseUnavailable as exc:
        print(f"agent-router mcp: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
    sys.stdout.write(render_report(report, args.format))
    return 0
