"""``agent-router usage report``: spend and tokens per group, read straight from the ledger database.

Works against ``--database-url`` (default ``$AGENT_ROUTER_DATABASE_URL``, else ``sqlite:///agent-router.db``),
which must exist: an empty ledger created on the spot would report zero spend.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from router.commands.records_db import run_report
from router.ledger import render
from router.ledger.reports import COLUMNS_SHOWN, GROUP_KEYS, parse_group_by, usage_report

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
    return render.report_text(report, fmt, COLUMNS_SHOWN)


def run(args: argparse.Namespace) -> int:
    return run_report("usage", lambda: parse_group_by(args.group_by), args.since, args.until, args.database_url,
                      usage_report, lambda report: render_report(report, args.format))
