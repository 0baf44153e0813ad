"""Load the tokenizer off the event loop, and only for a request that may really need an exact count.

Routing rules (``prompt_tokens`` ranges, the ``cheapest`` strategy) and the executor's context-window screen
are synchronous: when the free ceiling and the cheap bounds of :mod:`router.tokens` cannot decide them, they
count, and a first count loads a tiktoken encoding (0.3-0.9 s, 40-70 MB). :func:`ensure_exact_counts` runs
before them, on the request path: it asks the same bounds whether any count could be needed for this request
and, if so and the encoding is not loaded yet, loads it in a worker thread. Nothing is tokenized here.

What a snapshot could count for is worked out once per snapshot: every token range of its rules, and the
smallest known context window of its deployments (which covers both the screen and the ``cheapest`` pools).
The check is conservative (a range in a rule that would not be reached still counts as possible); a miss
would only mean a load on the event loop, exactly what happened before this pre-step existed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from router.config.snapshot import Snapshot
from router.context import RequestContext
from router.model_catalog import model_info
from router.rules.conditions import AllOf, AnyOf, Condition, NotOf, TokenRangeTest
from router.tokens import encoding_for, encoding_loaded, get_encoding, prompt_bounds, prompt_ceiling

log = logging.getLogger("agent_router.tokens")


@dataclass(frozen=True, slots=True)
class CountDemand:
    """Where a snapshot's routing could need an exact prompt count."""

    ranges: tuple[TokenRangeTest, ...]
    """Every ``prompt_tokens`` range of the rules."""
    smallest_window: int | None
    """The smallest known context window among the deployments (None: no window is known)."""

    @property
    def never(self) -> bool:
        return not self.ranges and self.smallest_window is None

    def may_count(self, ctx: RequestContext) -> bool:
        """Whether some range or window test could be left undecided by the ceiling and the bounds."""
        ceiling = prompt_ceiling(ctx)
        window = self.smallest_window
        open_ranges = [test for test in self.ranges if ceiling is None or test.decided_by(0, ceiling) is None]
        window_open = window is not None and (ceiling is None or ceiling > window)
        if not open_ranges and not window_open:
            return False
        low, high = prompt_bounds(ctx)
        if window_open and window is not None and high > window:
            return True
        return any(test.decided_by(low, high) is None for test in open_ranges)


def _ranges(condition: Condition | None) -> list[TokenRangeTest]:
    if isinstance(condition, TokenRangeTest):
        return [condition]
    if isinstance(condition, AllOf | AnyOf):
        return [test for child in condition.children for test in _ranges(child)]
    if isinstance(condition, NotOf):
        return _ranges(condition.child)
    return []


_last: tuple[Snapshot, CountDemand] | None = None


def count_demand(snapshot: Snapshot) -> CountDemand:
    """The snapshot's :class:`CountDemand`, computed on first use and kept for the latest snapshot."""
    global _last
    last = _last
    if last is not None and last[0] is snapshot:
        return last[1]
    windows = [w for w in (model_info(d).context_window for d in snapshot.deployments.values()) if w]
    demand = CountDemand(tuple(test for rule in snapshot.rules for test in _ranges(rule.condition)),
                         min(windows) if windows else None)
    _last = (snapshot, demand)
    return demand


async def ensure_exact_counts(ctx: RequestContext, *, explain: bool = False) -> None:
    """Before the rules run: load the encoding ``ctx``'s prompt would be counted with, in a worker thread,
    when the request may need an exact count and the encoding is not loaded yet. A cheap no-op otherwise.

    ``explain``: the decision is traced, and a traced range always shows the count. A failure to load is
    logged and left to the synchronous count to raise (as it did before this pre-step)."""
    demand = count_demand(ctx.snapshot)
    if demand.never or not ((explain and demand.ranges) or demand.may_count(ctx)):
        return
    name = encoding_for(ctx)
    if encoding_loaded(name):
        return
    try:
        await asyncio.to_thread(get_encoding, name)
    except Exception as exc:
        log.warning("tiktoken encoding %s could not be loaded: %s", name, exc)
