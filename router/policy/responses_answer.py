"""Response side on the Responses wire: check every call item of a whole ``Response`` object.

A client-executed call item (``function_call``, ``custom_tool_call``, shell, patch and computer calls, any other
``*_call``) passes only when the role allows it (conditions on its arguments included) and the filtered request
offered the tool; items the upstream ran itself pass (:data:`responses_keys.UPSTREAM_RUN`). ``strip`` removes the
others and appends one notice ``message`` item; ``block`` raises PolicyViolation; ``audit_only`` only records.
Look-alike keys (:mod:`router.policy.responses_keys`) are refused.
"""

from __future__ import annotations

import uuid
from typing import Any

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys, responses_keys
from router.policy.decide import decide_call
from router.policy.events import record_decision
from router.policy.response_side import policy_of


def may_carry_call(raw: bytes) -> bool:
    """Whether raw Responses JSON could hold a call item in any spelling: ``call`` in any case (``function_call``,
    ``Function-Call``, ``functionCall``) or a ``\\u`` escape that could spell one. Such bytes are never relayed as
    they came: duplicate keys decode differently in first-wins and last-wins parsers, so the client gets the
    re-encoded object the policy judged."""
    return b"call" in raw.lower() or b"\\u" in raw


def notice_item(text: str) -> dict[str, Any]:
    """The assistant message that tells the client which calls were removed."""
    return {"type": "message", "id": f"msg_{uuid.uuid4().hex}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def filter_response(ctx: RequestContext, data: dict[str, Any]) -> bool:
    """Strip or block disallowed call items of a whole Responses answer in place; True when it changed."""
    policy, offered = policy_of(ctx)
    output = data.get("output")
    found = responses_keys.find(data, "$")
    if isinstance(output, list):
        for i, item in enumerate(output):
            found += responses_keys.find(item, f"output[{i}]")
    changed = bool(found) and lookalike_keys.refuse(ctx, policy, found, "response") > 0
    if not isinstance(output, list):
        return changed
    violations: list[str] = []
    notices: list[str] = []
    kept = []
    for item in output:
        if responses_keys.is_client_call(item):
            name, arguments = responses_keys.call_facts(item)
            decision = decide_call(policy, offered, name, arguments)
            record_decision(ctx, policy, name, decision, "response")
            if not decision.allowed:
                violations.append(f"tool {name!r}: {decision.reason}")
                notices.append(policy.notice_for(str(name), decision.reason))
                continue
        kept.append(item)
    if violations and policy.mode == "block":
        raise PolicyViolation(f"the model called a tool role {policy.role!r} may not use: " + "; ".join(violations))
    if not notices or policy.mode != "strip":
        return changed
    kept.append(notice_item("\n".join(notices)))
    data["output"] = kept
    return True
