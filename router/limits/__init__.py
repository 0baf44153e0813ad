"""Rate limits and budgets per agent and per role, on counters shared by every replica.

    admit(ctx)   before policy and routing: one atomic check of every cap that applies to the caller
                 (one Redis round trip; none when no cap applies). Requests are counted here; over a
                 cap -> 429 RateLimited (+ retry-after) or BudgetExceeded saying which budget.
    settle(ctx)  once per finished request: its tokens and USD cost are added to the token windows and
                 budgets, in a background task.

Agent and role caps both apply; a role's caps are shared by all its agents. When the counter store is
unreachable the router keeps serving: it logs once, /readyz reports degraded, and each kind of cap fails
open or closed (503) as the settings say.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from router.context import RequestContext
from router.limits.checks import Check, Scope, checks_for, counts_usage, scopes_for, usage_gates
from router.limits.outage import CounterOutage
from router.limits.refusals import refusal, unavailable
from router.limits.spend import request_cost, tokens_used
from router.settings import Settings
from router.store.counters import Counters, CountersUnavailable, Gate

log = logging.getLogger("agent_router.limits")


class Limits:
    def __init__(self, counters: Counters, settings: Settings) -> None:
        self.counters = counters
        self.rates_fail_open = settings.limits_fail_open
        budgets = settings.budgets_fail_open
        self.budgets_fail_open = self.rates_fail_open if budgets is None else budgets
        policy = (f"rate limits fail {'open' if self.rates_fail_open else 'closed'}, "
                  f"budgets fail {'open' if self.budgets_fail_open else 'closed'}")
        self.outage = CounterOutage(counters, policy)
        self._scopes: dict[tuple[str | None, str | None], tuple[Scope, ...]] = {}
        self._scopes_version = ""
        self._pending: set[asyncio.Task[None]] = set()
        self._unpriced: set[str] = set()

    async def start(self) -> None:
        if self.counters.backend == "memory":
            return
        try:
            await self.counters.ping()
        except CountersUnavailable as exc:
            self.outage.failed(exc)

    async def close(self) -> None:
        """Let the last usage updates land (briefly), then stop probing."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2)
        await self.outage.close()

    def scopes(self, ctx: RequestContext) -> tuple[Scope, ...]:
        """The caller's capped scopes, cached per config version."""
        snapshot = ctx.snapshot
        if snapshot.version != self._scopes_version:
            self._scopes, self._scopes_version = {}, snapshot.version
        key = (ctx.agent, ctx.role)
        found = self._scopes.get(key)
        if found is None:
            found = self._scopes[key] = scopes_for(snapshot, ctx.agent, ctx.role)
        return found

    async def admit(self, ctx: RequestContext) -> None:
        """Raise RateLimited / BudgetExceeded (429) when the caller is over a limit."""
        scopes = self.scopes(ctx)
        if not scopes:
            return
        now = datetime.now(UTC)
        checks = checks_for(scopes, now)
        if self.outage.down:
            self._unchecked(checks)
            return
        try:
            refused = await self.counters.take([check.gate for check in checks])
        except CountersUnavailable as exc:
            self.outage.failed(exc)
            self._unchecked(checks)
            return
        if refused is not None:
            check = checks[refused.gate]
            ctx.limit_refused = f"{check.scope.kind}:{check.scope.name}:{check.metric}"
            raise refusal(check, refused.value, refused.ttl, now)

    def _unchecked(self, checks: list[Check]) -> None:
        """The counters are unreachable: pass, or refuse with 503 where a kind of cap fails closed."""
        closed = []
        if not self.rates_fail_open and any(check.is_rate for check in checks):
            closed.append("rate limits")
        if not self.budgets_fail_open and any(not check.is_rate for check in checks):
            closed.append("budgets")
        if closed:
            setting = "AGENT_ROUTER_LIMITS_FAIL_OPEN" if not self.rates_fail_open else "AGENT_ROUTER_BUDGETS_FAIL_OPEN"
            raise unavailable(closed, setting)

    def settle(self, ctx: RequestContext) -> None:
        """Count what the finished request used (tokens, cost) against its limits. Must not block."""
        scopes = self.scopes(ctx)
        if not scopes or self.outage.down or ctx.limit_refused or not counts_usage(scopes):
            return
        budgeted = any(s.caps.usd_day is not None or s.caps.usd_month is not None for s in scopes)
        cost = request_cost(ctx) if budgeted else None
        if budgeted and cost is None and ctx.served_by is not None:
            self._warn_unpriced(ctx.served_by.deployment)
        gates = usage_gates(scopes, datetime.now(UTC), tokens_used(ctx), cost)
        if not gates:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._add(gates))
        except RuntimeError:
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _add(self, gates: list[Gate]) -> None:
        for gate in gates:
            try:
                await self.counters.add(gate.key, gate.amount, gate.ttl)
            except CountersUnavailable as exc:
                self.outage.failed(exc)
                return

    def _warn_unpriced(self, deployment: str) -> None:
        if deployment in self._unpriced:
            return
        self._unpriced.add(deployment)
        log.warning("limits: deployment %r has no known price, so USD budgets cannot count what it serves; "
                    "set deployments.%s.prices in the config", deployment, deployment)

    def health(self) -> dict[str, str]:
        return {"limits": self.outage.health()}
