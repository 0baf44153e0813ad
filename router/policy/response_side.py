"""Response side: check every tool call in a whole (non-streamed) answer.

A call passes only when the role allows it (conditions included) and the filtered request offered the
tool, so a manipulated model cannot call something nobody offered. ``strip`` removes the other calls,
turns ``finish_reason`` ``tool_calls`` into ``stop`` when none is left and appends a notice to the
content; ``block`` raises PolicyViolation (the client gets a 403 instead of the answer); ``audit_only``
only records. Keys that imitate a governed key (``Tool_Calls``, ``Function``, ...) are refused the same way
(see :mod:`router.policy.lookalike_keys`).
"""

from __future__ import annotations

from typing import Any

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys
from router.policy.decide import ToolPolicy, decide_call, policy_for
from router.policy.events import record_decision
from router.policy.request_side import call_arguments


def policy_of(ctx: RequestContext) -> tuple[ToolPolicy, frozenset[str]]:
    """The policy and offered tools fixed by the request side (nothing offered if it did not run)."""
    return ctx.tool_policy or policy_for(ctx.snapshot, ctx.role), ctx.offered_tools


def may_carry_call(payload: bytes) -> bool:
    """Whether raw JSON could hold a tool call in any spelling: ``call`` in any case (``tool_calls``,
    ``function_call`` and their look-alikes) or a ``\\u`` escape that could spell one. Such bytes are never
    relayed as they came: duplicate keys (``{"tool_calls": [...], "tool_calls": null}``) decode differently in
    first-wins and last-wins parsers, so the client gets the re-encoded object the policy judged."""
    return b"call" in payload.lower() or b"\\u" in payload


def with_notice(content: Any, notices: list[str]) -> str:
    text = "\n".join(notices)
    return f"{content}\n\n{text}" if isinstance(content, str) and content else text


def filter_completion(ctx: RequestContext, data: dict[str, Any]) -> bool:
    """Strip or block disallowed tool calls in ``data`` in place; return True when it changed."""
    policy, offered = policy_of(ctx)
    found = lookalike_keys.find(data, lookalike_keys.ANSWER)
    changed = bool(found) and lookalike_keys.refuse(ctx, policy, found, "response") > 0
    scrubbed = {id(lookalike.owner) for lookalike in found} if changed else set()
    choices = data.get("choices")
    if not isinstance(choices, list):
        return changed
    violations: list[str] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        notices: list[str] = []
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            kept = [call for call in calls if _check(ctx, policy, offered, call, violations, notices)]
            if len(kept) != len(calls) and policy.mode == "strip":
                if kept:
                    message["tool_calls"] = kept
                else:
                    message.pop("tool_calls", None)
        legacy = message.get("function_call")
        if isinstance(legacy, dict) and not _check(ctx, policy, offered, {"function": legacy}, violations, notices) \
                and policy.mode == "strip":
            message.pop("function_call", None)
        if notices and policy.mode == "strip":
            changed = True
            message["content"] = with_notice(message.get("content"), notices)
        lost_calls = notices or id(message) in scrubbed or id(choice) in scrubbed
        if lost_calls and policy.mode == "strip" and not message.get("tool_calls") \
                and not message.get("function_call") and choice.get("finish_reason") in ("tool_calls", "function_call"):
            choice["finish_reason"] = "stop"
    if violations and policy.mode == "block":
        raise PolicyViolation(f"the model called a tool role {policy.role!r} may not use: " + "; ".join(violations))
    return changed


def _check(ctx: RequestContext, policy: ToolPolicy, offered: frozenset[str], call: Any, violations: list[str],
           notices: list[str]) -> bool:
    name, args = call_arguments(call) if isinstance(call, dict) else (None, None)
    decision = decide_call(policy, offered, name, args)
    record_decision(ctx, policy, name, decision, "response")
    if not decision.allowed:
        violations.append(f"tool {name!r}: {decision.reason}")
        notices.append(policy.notice_for(str(name), decision.reason))
    return decision.allowed
