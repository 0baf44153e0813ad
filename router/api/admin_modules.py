"""The admin API's route modules, each guarded by :func:`router.api.admin_auth.require_admin`."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

# Each module exposes ``api``, a FastAPI APIRouter whose routes depend on require_admin.
ADMIN_MODULES: tuple[str, ...] = ("router.api.admin_reload", "router.api.admin_limits", "router.api.admin_keys",
                                   "router.api.admin_usage", "router.api.admin_audit",
                                   "router.api.admin_mcp", "router.api.admin_freeze")


def admin_modules() -> list[ModuleType]:
    return [import_module(name) for name in ADMIN_MODULES]
