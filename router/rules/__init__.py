"""Declarative routing rules: request facts in, a :class:`~router.plan.RoutePlan` out. Pure.

Modules: ``schema`` (rule file shape), ``compile`` (files -> compiled rules at config load), ``conditions``
and ``facts`` (matching), ``routes`` and ``strategies`` (rule -> ordered deployments), ``decide`` (the
engine), ``explain`` (the decision as JSON), ``shadowing`` and ``testcases`` (``agent-router check``).
"""

from __future__ import annotations

from router.context import RequestContext
from router.deployment_stats import DeploymentStats
from router.plan import RoutePlan
from router.rules.decide import decide


def plan_route(ctx: RequestContext, stats: DeploymentStats | None = None) -> RoutePlan:
    """The first rule that matches ``ctx`` decides; else the requested model's chain; else 404."""
    return decide(ctx, stats).plan
