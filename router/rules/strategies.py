"""Order a pool of deployments by a strategy, best first, so the rest of the pool are the fallbacks.

- ``cheapest``: by price per token (input + output price, from the deployment's ``prices`` or litellm's price
  map), among deployments whose context window fits the estimated prompt. Unknown prices sort after known
  ones; deployments too small for the prompt go last (largest window first), so the executor can still say
  clearly why none could serve it. An unknown window counts as fitting.
- ``lowest_latency``: by the moving average of observed latency in this process. Deployments never measured
  yet go **first** (in pool order), so each gets tried and measured instead of being starved forever.
- ``least_busy``: by requests in flight from this process.

Ties keep the pool's order. Facts are passed in; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from router.deployment_stats import DeploymentStats


@dataclass(frozen=True, slots=True)
class PoolMember:
    """A deployment of a strategy pool with the catalog facts it is ranked by (looked up at load time)."""

    name: str
    price_per_token: float | None
    context_window: int | None


def cheapest(pool: Sequence[PoolMember],
             prompt_fits: Callable[[int], bool]) -> tuple[list[str], list[dict[str, Any]]]:
    """``prompt_fits(window)``: whether the estimated prompt fits a window (asked only of known windows, so a
    pool whose windows are unknown, or surely large enough, never needs the prompt counted)."""
    def fits(member: PoolMember) -> bool:
        return member.context_window is None or prompt_fits(member.context_window)

    fitting = [m for m in pool if fits(m)]
    too_small = sorted((m for m in pool if not fits(m)), key=lambda m: -(m.context_window or 0))
    fitting.sort(key=lambda m: (m.price_per_token is None, m.price_per_token or 0.0))
    notes = [{"deployment": m.name, "price_per_million": _per_million(m.price_per_token),
              "context_window": m.context_window, "fits": fits(m)} for m in (*fitting, *too_small)]
    return [m.name for m in (*fitting, *too_small)], notes


def lowest_latency(pool: Sequence[str], stats: DeploymentStats | None) -> tuple[list[str], list[dict[str, Any]]]:
    latency = {name: stats.latency_ms(name) if stats else None for name in pool}
    ordered = sorted(pool, key=lambda name: (latency[name] is not None, latency[name] or 0.0))
    return ordered, [{"deployment": name, "latency_ms": _round(latency[name])} for name in ordered]


def least_busy(pool: Sequence[str], stats: DeploymentStats | None) -> tuple[list[str], list[dict[str, Any]]]:
    busy = {name: stats.in_flight(name) if stats else 0 for name in pool}
    ordered = sorted(pool, key=lambda name: busy[name])
    return ordered, [{"deployment": name, "in_flight": busy[name]} for name in ordered]


def _per_million(price: float | None) -> float | None:
    return None if price is None else round(price * 1_000_000, 6)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
