"""``GET /admin/limits``: what every capped agent and role has used of its rate limits and budgets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends

from router.api.admin_auth import require_admin
from router.errors import LimitsUnavailable
from router.limits.usage_view import current_usage
from router.state import RouterState
from router.store.counters import CountersUnavailable

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@api.get("/limits", summary="Current use of every configured rate limit and budget")
async def limits_usage(state: RouterState = Depends(require_admin)) -> dict[str, Any]:
    """Counters as the shared store holds them now (this process only when counters live in memory)."""
    try:
        scopes = await current_usage(state.counters, state.snapshot, datetime.now(UTC))
    except CountersUnavailable as exc:
        raise LimitsUnavailable(f"the shared counter store is unreachable: {exc}", retry_after=2) from exc
    return {"backend": state.counters.backend, "scopes": scopes}
