"""``POST /admin/reload``: load, validate and swap in the config now; refuse it with file, line and reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.responses import JSONResponse

from router.api.admin_auth import require_admin
from router.config import ConfigError
from router.state import RouterState

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class ReloadResult(BaseModel):
    reloaded: bool
    version: str
    previous_version: str
    changed: bool
    files: list[str]


class ReloadProblem(BaseModel):
    file: str
    line: int | None
    reason: str


@api.post("/reload", response_model=ReloadResult,
          summary="Reload the config from disk; an invalid one is refused as a whole and the old one keeps serving",
          responses={400: {"description": "The new config is invalid: error.problems lists file, line and reason"}})
async def reload_config(state: RouterState = Depends(require_admin)) -> ReloadResult | JSONResponse:
    previous = state.snapshot.version
    try:
        snapshot = await state.reload()
    except ConfigError as exc:
        problems = [ReloadProblem(file=p.file, line=p.line, reason=p.reason).model_dump() for p in exc.problems]
        message = f"config refused; version {previous} keeps serving:\n{exc}"
        return JSONResponse(status_code=400, content={"error": {
            "message": message, "type": "invalid_request_error", "param": None, "code": "invalid_config",
            "problems": problems, "version": previous}})
    return ReloadResult(reloaded=True, version=snapshot.version, previous_version=previous,
                        changed=snapshot.version != previous, files=list(snapshot.files))
