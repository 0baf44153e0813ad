"""The errors a caller sees when a cap refuses it: which cap, whose, the limit, the use, and when it resets."""

from __future__ import annotations

from datetime import datetime

from router.errors import BudgetExceeded, LimitsUnavailable, RateLimited
from router.limits.checks import RATE_WINDOW, Check

_RATE_NAMES = {"rpm": "requests per minute", "tpm": "tokens per minute"}
_BUDGET_NAMES = {"usd_day": ("daily", "UTC day"), "usd_month": ("monthly", "UTC month")}


def usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount == 0 or abs(amount) >= 0.01 else f"${amount:.6f}"


def duration(seconds: float) -> str:
    seconds = max(1, round(seconds + 0.4999))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes and not days else []
    parts += [f"{secs}s"] if secs and not days and not hours else []
    return "".join(parts) or "1s"


def refusal(check: Check, used: float, ttl: float, now: datetime) -> RateLimited:
    """A 429 for the refusing check; ``ttl`` is the seconds left in its counter's window (-1: unknown)."""
    who = f"{check.scope.kind} '{check.scope.name}'"
    if check.is_rate:
        wait = ttl if ttl >= 0 else RATE_WINDOW
        unit = _RATE_NAMES[check.metric]
        return RateLimited(f"Rate limit reached for {who} on {unit}: limit {int(check.limit)}, "
                           f"used {int(used)} in the current minute. Please try again in {duration(wait)}.",
                           retry_after=wait)
    assert check.resets_at is not None
    adjective, period = _BUDGET_NAMES[check.metric]
    wait = max(1.0, (check.resets_at - now).total_seconds())
    return BudgetExceeded(f"Budget exceeded for {who}: {adjective} budget {usd(check.limit)} "
                          f"({period} {check.period}), spent {usd(used)}. It resets in {duration(wait)}, "
                          f"at {check.resets_at:%Y-%m-%dT%H:%M:%SZ}.", retry_after=wait)


def unavailable(kinds: list[str], setting: str) -> LimitsUnavailable:
    return LimitsUnavailable(f"{' and '.join(kinds)} cannot be checked: the shared counter store (Redis) is "
                             f"unreachable, and this router is set to refuse requests then ({setting}=false). "
                             f"Please try again shortly.", retry_after=2)
