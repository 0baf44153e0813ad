"""Declarative routing rules: request facts in, a :class:`~router.plan.RoutePlan` out. Pure."""

from __future__ import annotations

from router.context import RequestContext
from router.deployment_stats import DeploymentStats
from router.errors import ModelNotFound
from router.plan import RoutePlan


def plan_route(ctx: RequestContext, stats: DeploymentStats | None = None) -> RoutePlan:
    """(Stub: the public model's chain.) The rules work replaces this with the rule engine."""
    chain = ctx.snapshot.models.get(ctx.requested_model)
    if chain is None:
        raise ModelNotFound(f"the model {ctx.requested_model!r} does not exist", param="model")
    return RoutePlan(rule=f"model:{ctx.requested_model}", deployments=chain)
