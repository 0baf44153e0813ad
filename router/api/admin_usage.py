"""``GET /admin/usage``: the finance report (same parameters and figures as ``agent-router usage report``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from router.api.admin_auth import require_admin
from router.commands.usage import render_report
from router.errors import InvalidRequest
from router.ledger.reports import ReportError, parse_group_by, usage_report
from router.ledger.timerange import TimeRangeError, parse_bound
from router.state import RouterState

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

_MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "table": "text/plain; charset=utf-8"}


@api.get("/usage", summary="Requests, tokens and USD per group, over a time range")
async def usage(since: str | None = Query(None, alias="from"), until: str | None = Query(None, alias="to"),
                group_by: str = Query(""), format: str = Query("json"),
                state: RouterState = Depends(require_admin)) -> Any:
    if format not in _MEDIA:
        raise InvalidRequest("format must be json, csv or table", param="format")
    try:
        keys = parse_group_by(group_by)
        start, end = parse_bound(since), parse_bound(until, end=True)
    except (ReportError, TimeRangeError) as exc:
        raise InvalidRequest(str(exc)) from None
    report = await state.database.run(usage_report, state.database, start, end, keys)
    return Response(render_report(report, format), media_type=_MEDIA[format])
