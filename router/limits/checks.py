"""Which caps apply to a caller, and the counters that hold them.

A scope is one agent or one role with at least one cap. Each cap becomes a :class:`Check`: the counter key,
what admission adds to it (1 for requests, 0 for tokens and spend, which are added when the request ends),
and how long its window lives. Rate windows are fixed: 60 s from the first write. Budget windows are UTC
calendar days and months: the key carries the date, and expires a little after its period is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from router.config.roles_schema import LimitSpec
from router.config.snapshot import Snapshot
from router.store.counters import Gate

Metric = Literal["rpm", "tpm", "usd_day", "usd_month"]
RATE_METRICS = ("rpm", "tpm")
RATE_WINDOW = 60.0
BUDGET_GRACE = {"usd_day": timedelta(hours=1), "usd_month": timedelta(days=1)}


@dataclass(frozen=True, slots=True)
class Caps:
    """The limits of one scope; ``None`` means no cap."""

    rpm: int | None = None
    tpm: int | None = None
    usd_day: float | None = None
    usd_month: float | None = None

    @classmethod
    def of(cls, own: LimitSpec | None, defaults: LimitSpec | None = None) -> Caps:
        def pick(field: str) -> float | None:
            value = getattr(own, field, None) if own is not None else None
            return value if value is not None else getattr(defaults, field, None)

        return cls(pick("requests_per_minute"), pick("tokens_per_minute"),  # type: ignore[arg-type]
                   pick("usd_per_day"), pick("usd_per_month"))

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.rpm, self.tpm, self.usd_day, self.usd_month))


@dataclass(frozen=True, slots=True)
class Scope:
    kind: Literal["agent", "role"]
    name: str
    caps: Caps

    def key(self, metric: str, period: str = "") -> str:
        suffix = f":{period}" if period else ""
        return f"limits:{self.kind}:{self.name}:{metric}{suffix}"


@dataclass(frozen=True, slots=True)
class Check:
    scope: Scope
    metric: Metric
    limit: float
    gate: Gate
    period: str = ""
    """The UTC day (``2026-11-29``) or month (``2026-11``) of a budget."""
    resets_at: datetime | None = None
    """When a budget's period ends (rate windows report their own remaining time)."""

    @property
    def is_rate(self) -> bool:
        return self.metric in RATE_METRICS


def scopes_for(snapshot: Snapshot, agent: str | None, role: str | None) -> tuple[Scope, ...]:
    """The agent's caps (its own, else the configured agent defaults, field by field) and its role's caps."""
    spec = snapshot.spec
    scopes: list[Scope] = []
    if agent:
        agent_spec = spec.agents.get(agent)
        caps = Caps.of(agent_spec.limits if agent_spec else None, spec.limits.agent_defaults)
        if caps:
            scopes.append(Scope("agent", agent, caps))
    if role:
        role_spec = spec.roles.get(role)
        caps = Caps.of(role_spec.limits if role_spec else None)
        if caps:
            scopes.append(Scope("role", role, caps))
    return tuple(scopes)


_bounds_cache: tuple[tuple[int, int, int], dict[str, tuple[str, datetime]]] | None = None


def period_bounds(now: datetime) -> dict[str, tuple[str, datetime]]:
    """The current UTC day and month: their labels and when each ends (the same dict all day: read only)."""
    global _bounds_cache
    day = (now.year, now.month, now.day)
    cached = _bounds_cache
    if cached is not None and cached[0] == day and now.tzinfo is UTC:
        return cached[1]
    bounds = _period_bounds(now)
    if now.tzinfo is UTC:
        _bounds_cache = (day, bounds)
    return bounds


def _period_bounds(now: datetime) -> dict[str, tuple[str, datetime]]:
    day_end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    month_end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return {"usd_day": (now.strftime("%Y-%m-%d"), day_end), "usd_month": (now.strftime("%Y-%m"), month_end)}


_checks_cache: dict[tuple[tuple[int, int, int], tuple[Scope, ...]], list[Check]] = {}
_CHECKS_CACHE_SIZE = 4096


def checks_for(scopes: tuple[Scope, ...], now: datetime) -> list[Check]:
    """Every cap of every scope, in the order they are tested: rates first, then budgets.

    Cached per UTC day and scopes (the list is shared: read only). A budget key's time to live is then
    computed once a day: it may outlive its period by up to a day more, harmless as the key names its date."""
    if now.tzinfo is not UTC:
        return _checks_for(scopes, now)
    key = ((now.year, now.month, now.day), scopes)
    checks = _checks_cache.get(key)
    if checks is None:
        if len(_checks_cache) >= _CHECKS_CACHE_SIZE:
            _checks_cache.clear()
        checks = _checks_cache[key] = _checks_for(scopes, now)
    return checks


def counts_usage(scopes: tuple[Scope, ...]) -> bool:
    """Whether a finished request adds anything to these scopes' counters (a token window or a budget)."""
    return any(s.caps.tpm is not None or s.caps.usd_day is not None or s.caps.usd_month is not None
               for s in scopes)


def _checks_for(scopes: tuple[Scope, ...], now: datetime) -> list[Check]:
    bounds = period_bounds(now)
    checks: list[Check] = []
    for scope in scopes:
        caps = scope.caps
        if caps.rpm is not None:
            checks.append(Check(scope, "rpm", caps.rpm, Gate(scope.key("rpm"), 1, caps.rpm, RATE_WINDOW)))
        if caps.tpm is not None:
            checks.append(Check(scope, "tpm", caps.tpm, Gate(scope.key("tpm"), 0, caps.tpm, RATE_WINDOW)))
    for scope in scopes:
        for metric, limit in (("usd_day", scope.caps.usd_day), ("usd_month", scope.caps.usd_month)):
            if limit is not None:
                label, ends = bounds[metric]
                ttl = (ends + BUDGET_GRACE[metric] - now).total_seconds()
                checks.append(Check(scope, metric, limit, Gate(scope.key("usd", label), 0, limit, ttl),  # type: ignore[arg-type]
                                    period=label, resets_at=ends))
    return checks


def usage_gates(scopes: tuple[Scope, ...], now: datetime, tokens: int, cost: float | None) -> list[Gate]:
    """What a finished request adds: its tokens to token windows, its cost to budgets (``limit`` is unused)."""
    gates: list[Gate] = []
    for check in checks_for(scopes, now):
        if check.metric == "tpm" and tokens > 0:
            gates.append(check.gate._replace(amount=tokens))
        elif check.metric in ("usd_day", "usd_month") and cost:
            gates.append(check.gate._replace(amount=cost))
    return gates
