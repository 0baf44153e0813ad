"""Rate limits and budgets per agent and role. (Stub; the limits work replaces it.)"""

from __future__ import annotations

from router.context import RequestContext


class Limits:
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def admit(self, ctx: RequestContext) -> None:
        """Raise RateLimited / BudgetExceeded (429) when the caller is over a limit."""
        return None

    def settle(self, ctx: RequestContext) -> None:
        """Count what the finished request used (tokens, cost) against its limits. Must not block."""
        return None

    def health(self) -> dict[str, str]:
        return {}
