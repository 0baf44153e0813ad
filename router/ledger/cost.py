"""What a request cost in USD, from the provider's usage and the deployment's prices. Pure; no I/O.

Prices come from :func:`router.model_catalog.model_info` (config ``deployments.<name>.prices`` over litellm's
shipped price map). Cached prompt tokens are charged at the cached-input price (the input price when only
that is known). An unknown input or output price gives ``None`` -- unknown, never zero -- unless no token
was used at all, which costs exactly nothing.

The ledger stores costs as whole nano-dollars (:func:`to_nano`), so report totals are exact integer sums.
"""

from __future__ import annotations

from typing import Any

from router.config.schema import DeploymentSpec
from router.context import RequestContext
from router.model_catalog import model_info

NANO = 1_000_000_000
CTX_KEY = "cost_usd"


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def token_counts(usage: dict[str, Any] | None) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of an OpenAI-style usage dict; cached never exceeds prompt."""
    if not isinstance(usage, dict):
        return 0, 0, 0
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(prompt, _int(details.get("cached_tokens"))) if isinstance(details, dict) else 0
    return prompt, completion, cached


def cost_of_tokens(deployment: DeploymentSpec, prompt: int, completion: int, cached: int) -> tuple[float | None, bool]:
    """(USD or None, whether the deployment's price is known)."""
    info = model_info(deployment)
    known = info.input_cost_per_token is not None and info.output_cost_per_token is not None
    if not known:
        return (0.0 if prompt == 0 and completion == 0 else None), False
    assert info.input_cost_per_token is not None and info.output_cost_per_token is not None
    cached_price = info.cached_input_cost_per_token
    if cached_price is None:
        cached_price = info.input_cost_per_token
    cost = ((prompt - cached) * info.input_cost_per_token + cached * cached_price
            + completion * info.output_cost_per_token)
    return cost, True


def cost_usd(deployment: DeploymentSpec, usage: dict[str, Any] | None) -> tuple[float | None, bool]:
    """USD of one answer from ``deployment`` with this usage: ``(cost or None, price_known)``."""
    return cost_of_tokens(deployment, *token_counts(usage))


def request_cost(ctx: RequestContext) -> float | None:
    """USD of the request's served attempt from the provider-reported usage, cached in ``ctx.extra["cost_usd"]``.

    ``None`` when nothing was served, the provider reported no usage, or the price is unknown. (The ledger
    additionally estimates tokens for answers without usage; budgets count only reported usage.)
    """
    if CTX_KEY in ctx.extra:
        return ctx.extra[CTX_KEY]  # type: ignore[no-any-return]
    served, cost = ctx.served_by, None
    if served is not None and isinstance(ctx.usage, dict):
        deployment = ctx.snapshot.deployments.get(served.deployment)
        if deployment is not None:
            cost = cost_usd(deployment, ctx.usage)[0]
    ctx.extra[CTX_KEY] = cost
    return cost


def to_nano(cost: float | None) -> int | None:
    """USD -> whole nano-dollars (what the ledger stores); None stays None."""
    return None if cost is None else round(cost * NANO)


def from_nano(nano: int | None) -> float | None:
    return None if nano is None else nano / NANO
