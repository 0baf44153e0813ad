"""``agent-router mcp report``: MCP tool calls per group (decisions, errors, latency, result bytes), read
straight from the records database (``mcp_calls``; see ``router.ledger.mcp_reports``).

Works against ``--database-url`` (default ``$AGENT_ROUTER_DATABASE_URL``, else ``sqlite:///agent-router.db``),
which must exist, like ``usage report``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from router.commands.records_db import run_report
from router.ledger import render
from router.ledger.mcp_reports import COLUMNS_SHOWN, DEFAULT_GROUP_BY, GROUP_KEYS, mcp_report, parse_group_by

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
    return render.report_text(report, fmt, COLUMNS_SHOWN)


def run(args: argparse.Namespace) -> int:
    return run_report("mcp", lambda: parse_group_by(args.by), args.since, args.until, args.database_url, mcp_report,
                      lambda report: render_report(report, args.format))
