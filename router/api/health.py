"""Liveness and readiness probes.

``/readyz`` answers everyone with its status and status code (a load balancer needs no key); the checks behind
it name stores, addresses and failures, so they are shown only to a caller presenting the admin key.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from router.api.admin_auth import presents_admin_key
from router.state import RouterState

api = APIRouter(tags=["health"])


@api.get("/", summary="The router answers (clients such as Claude Code probe it)")
async def root() -> JSONResponse:
    return JSONResponse({"status": "ok", "service": "agent-router"})


@api.head("/", summary="The router answers (HEAD)")
async def root_head() -> JSONResponse:
    return JSONResponse({"status": "ok", "service": "agent-router"})


@api.get("/healthz", summary="The process is alive")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@api.get("/readyz", summary="Config loaded and stores reachable (checks shown to the admin key only)")
async def readyz(request: Request) -> JSONResponse:
    state: RouterState = request.app.state.router
    checks: dict[str, str] = {"config": f"loaded (version {state.snapshot.version})", **state.health()}
    failing = [name for name, value in checks.items() if value.startswith("down")]
    degraded = [name for name, value in checks.items() if value.startswith("degraded")]
    status = "unavailable" if failing else "degraded" if degraded else "ready"
    body: dict[str, object] = {"status": status}
    if presents_admin_key(request, state.settings.admin_key):
        body["checks"] = {name: state.snapshot.redactor(value) for name, value in checks.items()}
    return JSONResponse(body, status_code=503 if failing else 200)
