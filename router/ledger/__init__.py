"""Usage records and audit events, written in batches off the request path. (Stub.)"""

from __future__ import annotations

from router.context import RequestContext


class Ledger:
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        """Drain every pending record before returning (graceful shutdown loses nothing)."""
        return None

    def record(self, ctx: RequestContext, status: str) -> None:
        """Queue the usage records (one per attempt) and audit events of a finished request. Must not block."""
        return None

    def health(self) -> dict[str, str]:
        return {}
