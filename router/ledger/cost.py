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
from router.ledger.usage import MAX_TOKENS, valid_count
from router.model_catalog import model_info

NANO = 1_000_000_000


def _int(value: Any) -> int:
    """A token count as an int, never raising: 0 for what is not a possible count (see :mod:`router.ledger.usage`)."""
    if type(value) is int:  # the usual case, tested first
        return value if 0 <= value <= MAX_TOKENS else 0
    return int(value) if valid_count(value) else 0


def token_counts(usage: dict[str, Any] | None) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of an OpenAI-style usage dict; cached never exceeds prompt.

    Usage is checked when it is taken from the answer (:func:`router.ledger.usage.reported_usage`); an impossible
    number that still gets here counts as 0."""
    if not isinstance(usage, dict):
        return 0, 0, 0
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(prompt, _int(details.get("cached_tokens"))) if isinstance(details, dict) else 0
    return prompt, completion, cached


def cache_write_count(usage: dict[str, Any] | None, uncached: int) -> int:
    """Prompt tokens written to the upstream's cache (``prompt_tokens_details.cache_write_tokens``, filled from
    Anthropic's ``cache_creation_input_tokens``), never more than the ``uncached`` prompt tokens."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    if not isinstance(details, dict):
        return 0
    return min(max(uncached, 0), _int(details.get("cache_write_tokens")))


TokenPrices = tuple[float, float, float | None, float]
"""USD per input, cached input, output and cache-write token; the output price may be unknown (an embedding
model priced for input only), which matters only when output tokens were produced."""

_PRICES: dict[int, tuple[DeploymentSpec, TokenPrices | None]] = {}
_PRICES_KEPT = 1024


def token_prices(deployment: DeploymentSpec) -> TokenPrices | None:
    """The deployment's per-token prices (None when unknown), computed once per deployment object.

    Every finished request needs them; :func:`model_info` merges config and catalogue each time, so they are kept
    here, keyed by the (frozen) deployment's identity. The entry holds the deployment itself, so its id cannot be
    reused while cached; a config reload brings new deployment objects, and old ones are forgotten in bulk.
    """
    entry = _PRICES.get(id(deployment))
    if entry is not None and entry[0] is deployment:
        return entry[1]
    info = model_info(deployment)
    prices: TokenPrices | None = None
    if info.input_cost_per_token is not None:
        cached, written = info.cached_input_cost_per_token, info.cache_write_cost_per_token
        prices = (info.input_cost_per_token, info.input_cost_per_token if cached is None else cached,
                  info.output_cost_per_token, info.input_cost_per_token if written is None else written)
    if len(_PRICES) >= _PRICES_KEPT:
        _PRICES.clear()
    _PRICES[id(deployment)] = (deployment, prices)
    return prices


def cost_of_tokens(deployment: DeploymentSpec, prompt: int, completion: int, cached: int,
                   written: int = 0) -> tuple[float | None, bool]:
    """(USD or None, whether the deployment's price is known). ``cached`` (cache reads) and ``written`` (cache
    writes) are parts of ``prompt``, each at its own price."""
    prices = token_prices(deployment)
    if prices is None:
        return (0.0 if prompt == 0 and completion == 0 else None), False
    input_price, cached_price, output_price, write_price = prices
    if output_price is None:
        if completion:
            return None, False
        output_price = 0.0
    return ((prompt - cached - written) * input_price + cached * cached_price + written * write_price
            + completion * output_price), True


def cost_usd(deployment: DeploymentSpec, usage: dict[str, Any] | None) -> tuple[float | None, bool]:
    """USD of one answer from ``deployment`` with this usage: ``(cost or None, price_known)``."""
    prompt, completion, cached = token_counts(usage)
    return cost_of_tokens(deployment, prompt, completion, cached, cache_write_count(usage, prompt - cached))


def request_cost(ctx: RequestContext) -> float | None:
    """USD of the request's served attempt from the provider-reported usage, cached on ``ctx.cost``.

    ``None`` when nothing was served, the provider reported no usage, or the price is unknown. (The ledger
    additionally estimates tokens for answers without usage; budgets count only reported usage.)
    """
    if ctx.cost_known:
        return ctx.cost
    served, cost = ctx.served_by, None
    if served is not None and isinstance(ctx.usage, dict):
        deployment = ctx.snapshot.deployments.get(served.deployment)
        if deployment is not None:
            cost = cost_usd(deployment, ctx.usage)[0]
    ctx.cost, ctx.cost_known = cost, True
    return cost


def to_nano(cost: float | None) -> int | None:
    """USD -> whole nano-dollars (what the ledger stores); None stays None."""
    return None if cost is None else round(cost * NANO)


def from_nano(nano: int | None) -> float | None:
    return None if nano is None else nano / NANO
