"""``GET /admin/mcp/usage``: the tool-plane report (same parameters and figures as ``agent-router mcp report``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from router.api.admin_auth import require_admin
from router.commands.mcp import render_report
from router.errors import InvalidRequest
from router.ledger.mcp_reports import DEFAULT_GROUP_BY, mcp_report, parse_group_by
from router.ledger.reports import ReportError
from router.ledger.timerange import TimeRangeError, parse_bound
from router.state import RouterState

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

_MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "table": "text/plain; charset=utf-8"}


@api.get("/mcp/usage", summary="MCP tool calls per group (decisions, errors, latency), over a time range")
async def mcp_usage(since: str | None = Query(None, alias="from"), until: str | None = Query(None, alias="to"),
                    since_: str | None = Query(None, alias="since", include_in_schema=False),
                    until_: str | None = Query(None, alias="until", include_in_schema=False),
                    by: str = Query(",".join(DEFAULT_GROUP_BY)), format: str = Query("json"),
                    state: RouterState = Depends(require_admin)) -> Any:
    if format not in _MEDIA:
        raise InvalidRequest("format must be json, csv or table", param="format")
    try:
        keys = parse_group_by(by)
        start, end = parse_bound(since or since_), parse_bound(until or until_, end=True)
    except (ReportError, TimeRangeError) as exc:
        raise InvalidRequest(str(exc)) from None
    report = await state.database.run(mcp_report, state.database, start, end, keys)
    return Response(render_report(report, format), media_type=_MEDIA[format])
