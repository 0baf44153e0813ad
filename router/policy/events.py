"""Turn tool decisions into audit events (``ctx.audit_events``) and the client-visible summary.

Actions: ``allowed``, ``stripped``, ``blocked``, ``would_strip`` (audit_only), ``refused_name`` (a name outside
the safe alphabet, stripped), ``rewritten`` (a ``tool_choice``/``function_call`` changed because of stripping),
``would_deny`` (a rule in shadow would have denied an allowed call; its rule reads ``shadow:<rule>``).
Stages: ``request`` (tools, functions, tool_choice), ``history`` (calls in past assistant messages),
``response`` (a whole answer), ``stream`` (a streamed answer).
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson

from router.context import RequestContext
from router.policy.decide import ToolDecision, ToolPolicy


def action_for(policy: ToolPolicy, decision: ToolDecision) -> str:
    """What enforcing ``decision`` under the role's mode means."""
    if decision.allowed:
        return "allowed"
    if policy.mode == "audit_only":
        return "would_strip"
    if policy.mode == "block":
        return "blocked"
    return "refused_name" if decision.rule == "unsafe-name" else "stripped"


_NOTIFIED = frozenset(("stripped", "blocked", "refused_name", "rewritten"))
_now = time.time


def record(ctx: RequestContext, policy: ToolPolicy, tool: object, action: str, stage: str, rule: str,
           reason: str) -> None:
    """Append one audit event; a change the client should know about also goes into ``ctx.policy_summary``.

    On the event loop, once per tool decision: the event is a plain dict, shaped and checked by the ledger's
    writer off the loop (``audit_chain``)."""
    name = tool if tool is None or isinstance(tool, str) else repr(tool)
    ctx.audit_events.append({
        "ts": _now(), "request_id": ctx.request_id, "agent": ctx.agent, "role": ctx.role,
        "model": ctx.requested_model, "tool": name, "action": action, "stage": stage, "rule": rule,
        "reason": reason, "policy_version": policy.version,
    })
    if action in _NOTIFIED:
        ctx.policy_summary.append({"tool": name, "action": action, "reason": reason, "stage": stage})


def record_decision(ctx: RequestContext, policy: ToolPolicy, tool: object, decision: ToolDecision,
                    stage: str) -> str:
    action = "allowed" if decision.allowed else action_for(policy, decision)
    record(ctx, policy, tool, action, stage, decision.rule, decision.reason)
    for rule, reason in decision.shadow:  # what a rule in shadow would have changed: evidence, not enforcement
        record(ctx, policy, tool, SHADOW_ACTION, stage, rule, reason)
    return action


SHADOW_ACTION = "would_deny"
"""The action of a shadow rule's decision; its rule reads ``shadow:<rule>``."""


MAX_HEADER_CHARS = 4096
_HEADER_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def summary_header(summary: list[dict[str, Any]]) -> str:
    """The ``x-agent-router-policy`` value: ASCII-only JSON (header values are latin-1), kept under 4 KiB.

    Entries that do not fit are counted in a final ``{"truncated": n}`` entry.
    """
    if len(summary) <= 16:  # the usual case: a few ASCII entries that fit, encoded in one fast pass (orjson
        # leaves DEL unescaped, json escapes it; a header value may not carry it)
        fast = orjson.dumps(summary)
        whole = fast.decode() if fast.isascii() and 0x7F not in fast else _HEADER_JSON.encode(summary)
        if len(whole) + 1 <= MAX_HEADER_CHARS - 32:
            return whole
    kept: list[dict[str, Any]] = []
    size = 2
    for i, entry in enumerate(summary):
        text = _HEADER_JSON.encode(entry)
        if size + len(text) + 1 > MAX_HEADER_CHARS - 32:
            kept.append({"truncated": len(summary) - i})
            break
        kept.append(entry)
        size += len(text) + 1
    return _HEADER_JSON.encode(kept)
