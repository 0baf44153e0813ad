"""Explain a routing decision as JSON without calling any provider.

One function, :func:`explain_route`, serves ``POST /v1/route/explain``, ``agent-router explain`` and the rule
tests, so all three say exactly what the router would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.capabilities import screen
from router.config.snapshot import Snapshot
from router.context import RequestContext
from router.deployment_stats import DeploymentStats
from router.rules.decide import Decision, decide
from router.rules.facts import header_name
from router.rules.routes import Random, default_random


def request_context(snapshot: Snapshot, payload: dict[str, Any], *, agent: str | None = None,
                    role: str | None = None, headers: Mapping[str, str] | None = None,
                    request_id: str = "explain", wire: str = "chat") -> RequestContext:
    """A context as the pipeline builds it, for a request (in format ``wire``) explained rather than sent."""
    ctx = RequestContext(request_id=request_id, snapshot=snapshot, payload=payload,
                         stream=bool(payload.get("stream")), requested_model=str(payload.get("model") or ""),
                         wire=wire)
    ctx.agent, ctx.role = agent, role
    ctx.headers = {header_name(k): str(v) for k, v in (headers or {}).items()}
    if role is None and agent is not None and agent in snapshot.agents:
        ctx.role = snapshot.agents[agent].role
    return ctx


def explain_route(ctx: RequestContext, stats: DeploymentStats | None = None,
                  rand: Random = default_random) -> dict[str, Any]:
    """The decision for ``ctx`` as JSON: rule, why, the chain it would try and the params it would change.

    Each chain entry says whether the executor would skip it for this request (a capability the request needs,
    or a context window too small for the prompt). Cooldowns are live state and are not shown.
    """
    return decision_json(ctx, decide(ctx, stats, explain=True, rand=rand))


def decision_json(ctx: RequestContext, decision: Decision) -> dict[str, Any]:
    plan, rule = decision.plan, decision.rule
    deployments = ctx.snapshot.deployments
    _, unfit = screen(ctx, plan.deployments)
    skips = {item.deployment: item.reason for item in unfit}
    chain = [{"deployment": name, "provider": deployments[name].provider, "model": deployments[name].model,
              "skip": skips.get(name)} for name in plan.deployments if name in deployments]
    return {
        "request": {"model": ctx.requested_model, "agent": ctx.agent, "role": ctx.role, "stream": ctx.stream,
                    "headers": ctx.headers},
        "rule": plan.rule,
        "matched_by": "model" if rule is None else ("default" if rule.is_default else "rule"),
        "where": rule.where if rule else None,
        "description": rule.description if rule else None,
        "reason": plan.reason,
        "conditions": decision.conditions,
        "not_matched": decision.evaluated,
        "route": decision.resolved.detail,
        "deployments": list(plan.deployments),
        "chain": chain,
        "set_params": plan.set_params,
        "cap_params": plan.cap_params,
        "prompt_tokens": ctx.prompt_estimate,
    }
