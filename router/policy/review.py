"""One request's tool-policy review, shared by the wires whose request shapes have their own module (Messages,
Responses): decide each tool, choice and past call, record every decision, collect the violations, and at the end
apply the role's mode to the body.

A wire's reviewer subclasses :class:`Review` with its own ``tool`` judgement and look-alike key finder; the walk
over its fields stays in the wire's module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys
from router.policy.decide import ToolDecision, ToolPolicy, decide
from router.policy.events import record_decision

Finder = Callable[[Any, str], list[lookalike_keys.LookAlike]]


class Review:
    """``check`` decides and records; ``violations`` lists what the role does not allow; ``offered`` the safe names
    of the tools kept."""

    find_lookalikes: Finder

    def __init__(self, ctx: RequestContext, policy: ToolPolicy) -> None:
        self.ctx, self.policy = ctx, policy
        self.violations: list[str] = []
        self.offered: set[str] = set()

    def tool(self, tool: Any, i: int) -> bool:
        """Whether ``tools[i]`` stays (decided and recorded)."""
        raise NotImplementedError

    def check(self, name: Any, arguments: str | None, stage: str, what: str) -> bool:
        decision = decide(self.policy, name, arguments)
        record_decision(self.ctx, self.policy, name, decision, stage)
        if not decision.allowed:
            self.violations.append(f"{what} {name!r}: {decision.reason}")
        return decision.allowed

    def refuse(self, reason: str, stage: str = "request") -> None:
        record_decision(self.ctx, self.policy, None, ToolDecision(False, "unjudgeable", reason), stage)
        self.violations.append(reason)

    def lookalikes(self, node: Any, where: str, stage: str = "request") -> None:
        """Look-alike keys in ``node`` are violations (removed under ``strip``)."""
        found = self.find_lookalikes(node, where)
        if not found:
            return
        self.violations.extend(item.describe() for item in found)
        for item in found:
            record_decision(self.ctx, self.policy, None, ToolDecision(False, lookalike_keys.RULE, item.describe()),
                            stage)
        if self.policy.mode == "strip":
            for item in found:
                item.remove()

    def tools(self, payload: dict[str, Any], out: dict[str, Any]) -> list[Any] | None:
        """The ``tools`` kept (None when the body has none); ``out["tools"]`` set when that changed them."""
        tools = payload.get("tools")
        if tools is None:
            return None
        if not isinstance(tools, list):
            self.refuse("tools is not a list, so its tools cannot be judged")
            out["tools"] = []
            return []
        kept = [tool for i, tool in enumerate(tools) if self.tool(tool, i)]
        if len(kept) != len(tools):
            out["tools"] = kept
        return kept

    def conclude(self, payload: dict[str, Any], out: dict[str, Any]) -> None:
        """Apply the mode: ``audit_only`` changes nothing, ``block`` raises PolicyViolation listing every violation,
        ``strip`` writes ``out`` into ``payload`` (None removes a field; no tool left removes the choice too)."""
        self.ctx.offered_tools = frozenset(self.offered - {""})
        if not self.violations or self.policy.mode == "audit_only":
            return
        if self.policy.mode == "block":
            raise PolicyViolation(f"role {self.policy.role!r} may not use: " + "; ".join(self.violations),
                                  param="tools")
        for key, value in out.items():
            if value is None:
                payload.pop(key, None)
            else:
                payload[key] = value
        if out.get("tools") == []:
            payload.pop("tools", None)
            payload.pop("tool_choice", None)
