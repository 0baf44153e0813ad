"""``agent-router usage report``: spend and tokens per group, read straight from the ledger database.

Works against ``--database-url`` (default ``$AGENT_ROUTER_DATABASE_URL``, else ``sqlite:///agent-router.db``),
which must exist: an empty ledger created on the spot would report zero spend.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from router.commands.records_db import existing_database
from router.ledger import render
from router.ledger.reports import COLUMNS_SHOWN, GROUP_KEYS, ReportError, parse_group_by, usage_report
from router.ledger.schema import migrate
from router.ledger.timerange import TimeRangeError, parse_bound
from router.store.database import DatabaseUnavailable

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("usage", help="usage and cost reports from the ledger")
    actions = parser.add_subparsers(dest="usage_action", required=True)
    report = actions.add_parser("report", help="requests, tokens and USD per group")
    report.add_argument("--from", dest="since", help="start (inclusive): 2026-11-01, 2026-11-01T12:00:00Z, epoch")
    report.add_argument("--to", dest="until", help="end (exclusive; a date alone includes that whole day)")
    report.add_argument("--group-by", default="", help=f"comma-separated: {', '.join(GROUP_KEYS)}")
    report.add_argument("--format", choices=render.FORMATS, default="table")
    report.add_argument("--database-url", help="ledger database (default: $AGENT_ROUTER_DATABASE_URL, "
                                               "else sqlite:///agent-router.db)")
    return {"usage": run}


def render_report(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return render.json_text(report)
    columns = list(report["group_by"]) + COLUMNS_SHOWN
    rows = list(report["groups"])
    if fmt == "csv":
        return render.csv_text(rows, columns)
    first = columns[0] if report["group_by"] else None
    total = {**report["totals"], **({first: "TOTAL"} if first else {})}
    return render.table([*rows, total] if first else [total], columns)


def run(args: argparse.Namespace) -> int:
    try:
        group_by = parse_group_by(args.group_by)
        since, until = parse_bound(args.since), parse_bound(args.until, end=True)
    except (ReportError, TimeRangeError) as exc:
        print(f"agent-router usage: {exc}", file=sys.stderr)
        return 2
    database = existing_database(args.database_url)
    try:
        migrate(database)
        report = usage_report(database, since, until, group_by)
    except DatabaseUnavailable as exc:
        print(f"agent-router usage: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
    sys.stdout.write(render_report(report, args.format))
    return 0
