"""Who is calling: API key -> agent -> role. (Stub; the identity work replaces it.)"""

from __future__ import annotations

from collections.abc import Mapping

from router.config.snapshot import Snapshot
from router.context import RequestContext


class Identity:
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def authenticate(self, headers: Mapping[str, str], ctx: RequestContext) -> None:
        """Set ``ctx.agent``, ``ctx.role`` and ``ctx.key_id``, or raise AuthenticationFailed (401)."""
        return None

    def authorize_model(self, ctx: RequestContext) -> None:
        """Raise PermissionDenied (403) when the role may not request ``ctx.requested_model``."""
        return None

    async def models_for(self, headers: Mapping[str, str], snapshot: Snapshot) -> list[str]:
        """The public models the caller (authenticated from ``headers``) may request, sorted."""
        return sorted(snapshot.models)
