"""The rule engine: evaluate the snapshot's rules in order, first match wins, and build the plan.

When no rule matches and there is no default, the requested public model's own chain (``models:``) is the
plan; when that does not exist either, the model is not found (404). Shared by routing and explain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.context import RequestContext
from router.deployment_stats import DeploymentStats
from router.errors import ModelNotFound
from router.plan import RoutePlan
from router.rules.compile import CompiledRule
from router.rules.conditions import Trace
from router.rules.facts import RequestFacts
from router.rules.routes import Random, Resolved, default_random


@dataclass
class Decision:
    plan: RoutePlan
    rule: CompiledRule | None
    """None when no rule matched and the requested model's own chain is used."""
    resolved: Resolved
    conditions: Trace = field(default_factory=list)
    """What the matching rule's conditions tested (empty for a rule without conditions)."""
    evaluated: list[dict[str, Any]] = field(default_factory=list)
    """Each rule tried before the match, with what its conditions found (only when traced)."""


def decide(ctx: RequestContext, stats: DeploymentStats | None = None, *, explain: bool = False,
           rand: Random = default_random) -> Decision:
    facts = RequestFacts(ctx)
    evaluated: list[dict[str, Any]] = []
    for rule in ctx.snapshot.rules:
        if rule.condition is None:
            return _plan(rule, facts, stats, rand, None, evaluated)
        trace: Trace | None = [] if explain else None
        if rule.condition.test(facts, trace):
            return _plan(rule, facts, stats, rand, trace, evaluated)
        if explain:
            evaluated.append({"rule": rule.name, "where": rule.where, "matched": False, "conditions": trace})
    chain = ctx.snapshot.models.get(ctx.requested_model)
    if chain is None:
        raise ModelNotFound(f"the model {ctx.requested_model!r} does not exist and no routing rule matches it",
                            param="model")
    reason = f"no rule matched; the chain of model {ctx.requested_model!r}"
    resolved = Resolved(chain, reason, {"kind": "chain", "model": ctx.requested_model})
    plan = RoutePlan(rule=f"model:{ctx.requested_model}", deployments=chain, reason=reason)
    return Decision(plan, None, resolved, [], evaluated)


def _plan(rule: CompiledRule, facts: RequestFacts, stats: DeploymentStats | None, rand: Random,
          trace: Trace | None, evaluated: list[dict[str, Any]]) -> Decision:
    """``trace`` is None on the hot path: the reason then quotes the rule's condition, not the request."""
    resolved = rule.route.resolve(facts, rule.name, stats, rand)
    if rule.condition is None:
        why = "the default rule" if rule.is_default else "a rule for every request"
    else:
        why = describe(trace) if trace is not None else f"when {rule.summary}"
    # The route's own dicts, not copies: nothing downstream writes to a plan's params (they belong to the snapshot).
    plan = RoutePlan(rule=rule.name, deployments=resolved.deployments, set_params=rule.route.set_params,
                     cap_params=rule.route.cap_params, reason=f"{why}; {resolved.reason}")
    return Decision(plan, rule, resolved, trace or [], evaluated)


def describe(trace: Trace, failed_too: bool = False) -> str:
    """A one-line summary of the tests that decided a match: ``model 'gpt-4o' ~ gpt-4*, not(stream True !~ True)``."""
    if len(trace) == 1 and "all" in trace[0] and not failed_too:
        trace = trace[0]["all"]  # the implicit 'and' of a rule's fields says nothing
    parts = []
    for item in trace:
        if not item.get("matched") and not failed_too:
            continue
        for kind in ("all", "any", "not"):
            if kind in item:
                parts.append(f"{kind}({describe(item[kind], failed_too=kind == 'not')})")
                break
        else:
            expected = item["expected"]
            if isinstance(expected, list):
                expected = "|".join(expected)
            elif isinstance(expected, dict):
                expected = f"[{expected['min'] or 0}, {expected['max'] if expected['max'] is not None else '∞'}]"
            sign = "~" if item["matched"] else "!~"
            parts.append(f"{item['test']} {item['actual']!r} {sign} {expected}")
    return ", ".join(parts)
