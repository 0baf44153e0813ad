"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from router.state import RouterState

api = APIRouter(tags=["health"])


@api.get("/healthz", summary="The process is alive")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@api.get("/readyz", summary="Config loaded and stores reachable")
async def readyz(request: Request) -> JSONResponse:
    state: RouterState = request.app.state.router
    checks: dict[str, str] = {"config": f"loaded (version {state.snapshot.version})", **state.health()}
    failing = [name for name, value in checks.items() if value.startswith("down")]
    degraded = [name for name, value in checks.items() if value.startswith("degraded")]
    if failing:
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    return JSONResponse({"status": "degraded" if degraded else "ready", "checks": checks})
