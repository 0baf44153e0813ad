"""Response side on the Messages wire: check every call block in a whole answer.

A call block (``tool_use``, ``server_tool_use``, ``mcp_tool_use``, or a ``type`` imitating one) passes only when
the role allows it (conditions on its ``input`` included) and the filtered request offered the tool. ``strip``
removes the others and the blocks answering them (same ``tool_use_id``), appends the notice as a text block and
turns ``stop_reason`` ``tool_use`` into ``end_turn`` when no ``tool_use`` block is left; ``block`` raises
PolicyViolation; ``audit_only`` only records. Look-alike keys (:mod:`router.policy.messages_keys`) are refused.
"""

from __future__ import annotations

from typing import Any

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys, messages_keys
from router.policy.decide import decide_call
from router.policy.events import record_decision
from router.policy.messages_request import block_input
from router.policy.response_side import policy_of


def may_carry_call(raw: bytes) -> bool:
    """Whether raw Messages JSON could hold a call in any spelling: ``tool`` in any case (``tool_use``,
    ``server_tool_use``, ``Tool-Use``) or a ``\\u`` escape that could spell one. Such bytes are never relayed as
    they came: duplicate keys decode differently in first-wins and last-wins parsers, so the client gets the
    re-encoded object the policy judged."""
    return b"tool" in raw.lower() or b"\\u" in raw


def filter_message(ctx: RequestContext, data: dict[str, Any]) -> bool:
    """Strip or block disallowed call blocks of a whole Messages answer in place; True when it changed."""
    policy, offered = policy_of(ctx)
    content = data.get("content")
    found = messages_keys.find(data, "$")
    if isinstance(content, list):
        for i, block in enumerate(content):
            found += messages_keys.find(block, f"content[{i}]")
    changed = bool(found) and lookalike_keys.refuse(ctx, policy, found, "response") > 0
    if not isinstance(content, list):
        return changed
    violations: list[str] = []
    notices: list[str] = []
    removed: set[str] = set()
    kept = []
    for block in content:
        if isinstance(block, dict) and messages_keys.is_call_type(block.get("type")):
            name = messages_keys.call_name(block)
            decision = decide_call(policy, offered, name, block_input(block))
            record_decision(ctx, policy, name, decision, "response")
            if not decision.allowed:
                violations.append(f"tool {name!r}: {decision.reason}")
                notices.append(policy.notice_for(str(name), decision.reason))
                if isinstance(block.get("id"), str):
                    removed.add(block["id"])
                continue
        elif isinstance(block, dict) and block.get("tool_use_id") in removed:
            continue
        kept.append(block)
    if violations and policy.mode == "block":
        raise PolicyViolation(f"the model called a tool role {policy.role!r} may not use: " + "; ".join(violations))
    if not notices or policy.mode != "strip":
        return changed
    kept.append({"type": "text", "text": "\n".join(notices)})
    data["content"] = kept
    if data.get("stop_reason") == "tool_use" and not any(
            isinstance(b, dict) and b.get("type") == "tool_use" for b in kept):
        data["stop_reason"] = "end_turn"
    return True
