"""What a finished request used: tokens for the token windows, USD for the budgets.

The cost is the ledger's own (:func:`router.ledger.cost.request_cost`: provider-reported usage at the
deployment's prices, ``None`` when unknown), so budgets and finance reports agree.
"""

from __future__ import annotations

import math

from router.context import RequestContext
from router.ledger import cost
from router.ledger.cost import token_counts

__all__ = ["request_cost", "tokens_used"]


def request_cost(ctx: RequestContext) -> float | None:
    """The ledger's cost of the request, for budgets: never negative nor infinite, so no answer lowers a budget."""
    usd = cost.request_cost(ctx)
    if usd is None:
        return None
    return usd if 0.0 <= usd < math.inf else 0.0


def tokens_used(ctx: RequestContext) -> int:
    """Prompt + completion tokens as the provider reported them; else, for an answer that reported none, the
    prompt estimate routing made (a lower bound)."""
    if isinstance(ctx.usage, dict):
        prompt, completion, _ = token_counts(ctx.usage)
        return prompt + completion
    served, estimate = ctx.served_by, ctx.prompt_estimate
    if served is not None and served.status == "ok" and isinstance(estimate, int):
        return estimate
    return 0
