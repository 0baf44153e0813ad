"""``GET /admin/audit``: policy decisions from the audit trail, newest first; ``/admin/audit/verify`` checks
the hash chain; ``POST /admin/audit/acknowledge`` records that an operator has investigated a chain break."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from router.api.admin_auth import require_admin
from router.commands.audit import filter_from, with_time
from router.errors import InvalidRequest, NotFound
from router.ledger import audit_chain, audit_verify
from router.ledger.shadow_report import shadow_report
from router.ledger.timerange import TimeRangeError, parse_bound
from router.state import RouterState

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@api.get("/audit", summary="Query the audit trail (time range, agent, role, tool, action, request id)")
async def list_audit(since: str | None = Query(None, alias="from"), until: str | None = Query(None, alias="to"),
                     agent: str | None = None, role: str | None = None, tool: str | None = None,
                     action: str | None = None, request_id: str | None = None, limit: int = Query(100, ge=1),
                     state: RouterState = Depends(require_admin)) -> Any:
    try:
        where = filter_from({"since": since, "until": until, "agent": agent, "role": role, "tool": tool,
                             "action": action, "request_id": request_id, "limit": limit})
    except TimeRangeError as exc:
        raise InvalidRequest(str(exc)) from None
    rows = await state.database.run(audit_chain.list_events, state.database, where)
    return {"object": "list", "data": with_time(rows)}


@api.get("/audit/shadow", summary="What rules in shadow would have changed (by plane, role, tool and rule)")
async def shadow_audit(since: str | None = Query(None, alias="from"), until: str | None = Query(None, alias="to"),
                       state: RouterState = Depends(require_admin)) -> Any:
    try:
        start, end = parse_bound(since), parse_bound(until, end=True)
    except TimeRangeError as exc:
        raise InvalidRequest(str(exc)) from None
    return await state.database.run(shadow_report, state.database, start, end)


@api.get("/audit/verify", summary="Walk the audit hash chain")
async def verify_audit(state: RouterState = Depends(require_admin)) -> Any:
    result = await state.database.run(audit_verify.verify, state.database, state.audit.keys)
    return {"ok": result.ok, "status": result.status, "checked": result.checked, "problem": result.problem,
            "seq": result.seq, "notes": list(result.notes)}


class Acknowledgement(BaseModel):
    # A BIGINT column: a larger number is the caller's 400 (validation), not a driver's overflow (a 500).
    seq: int = Field(ge=0, le=2**63 - 1, description="The seq of the chain_break event investigated")
    note: str = Field(min_length=1, max_length=500, description="Who looked, what was found")


@api.post("/audit/acknowledge", summary="Acknowledge a recorded chain break (it stays in the chain, marked)")
async def acknowledge_break(body: Acknowledgement, state: RouterState = Depends(require_admin)) -> Any:
    seq = await state.database.run(audit_chain.acknowledge, state.database, state.audit.key, body.seq, body.note)
    if seq is None:
        raise NotFound(f"no chain break is recorded at seq {body.seq}")
    await state.audit.publish()
    return {"acknowledged": body.seq, "seq": seq}
