"""Request side on the Responses wire: keep only the tools, ``tool_choice`` and history the role allows.

The same contract as :func:`router.policy.messages_request.review_messages_request`, over a Responses body:

- ``tools``: ``function`` and ``custom`` tools are decided on ``name``. Hosted tools make the upstream act for the
  agent, so each is decided as a tool named by its type family (:func:`responses_keys.tool_family`:
  ``web_search_preview_2025_03_11`` -> ``web_search``); an unknown type on its type as given. An ``mcp`` tool is
  decided as ``mcp:<server_label>`` with its server (label, URL, connector) as arguments, so a role's conditions can
  pin the URL; its ``headers`` never reach a record.
- ``tool_choice``: a forced choice naming a removed tool becomes ``auto`` (or goes, with ``tools``, when no tool
  is left); ``required`` with no tool left goes; an ``allowed_tools`` list is filtered.
- history (a list ``input``): past calls are decided on their name and arguments (a forged history cannot smuggle
  a denied call), and the items answering a removed call (same ``call_id``) go with it. Unknown item types are
  kept, unless they are calls (:func:`responses_keys.is_call_type`).

``strip`` rewrites ``ctx.payload``; ``block`` raises PolicyViolation listing every violation; ``audit_only``
records only. Shapes that cannot be judged and look-alike keys are violations too.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.context import RequestContext
from router.policy import responses_keys
from router.policy.decide import ToolPolicy, policy_for
from router.policy.events import record
from router.policy.names import safe_name
from router.policy.review import Review

_CHOICE_STRINGS = ("auto", "none", "required")


def tool_name(tool: dict[str, Any]) -> Any:
    """What a tool (or a ``tool_choice`` naming one) is decided as; None when it names nothing judgeable."""
    kind = tool.get("type")
    if kind in ("function", "custom"):
        return tool.get("name")
    if kind == "mcp":
        label = tool.get("server_label")
        return f"mcp:{label}" if isinstance(label, str) else None
    return responses_keys.tool_family(kind) if isinstance(kind, str) else None


class _Review(Review):
    find_lookalikes = staticmethod(responses_keys.find)

    def __init__(self, ctx: RequestContext, policy: ToolPolicy) -> None:
        super().__init__(ctx, policy)
        self.mcp_servers: dict[str, str] = {}
        """Server label -> the arguments its ``mcp`` tool was decided with (for past ``mcp_call`` items)."""

    def tool(self, tool: Any, i: int) -> bool:
        self.lookalikes(tool, f"tools[{i}]")
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            self.refuse(f"tools[{i}] has no string type, so it cannot be judged")
            return False
        name = tool_name(tool)
        if not isinstance(name, str):
            self.refuse(f"tools[{i}] ({tool['type'][:40]}) names no tool, so it cannot be judged")
            return False
        arguments = responses_keys.mcp_arguments(tool) if tool["type"] == "mcp" else None
        if not self.check(name, arguments, "request", "tool"):
            return False
        if arguments is not None:
            self.mcp_servers[tool["server_label"]] = arguments
        self.offered.add(safe_name(name) or "")
        return True


def _choice(review: _Review, payload: dict[str, Any], kept: list[Any] | None, out: dict[str, Any]) -> None:
    choice = payload.get("tool_choice")
    if choice is None:
        return
    left = bool(kept)
    review.lookalikes(choice, "tool_choice")
    if isinstance(choice, str):
        if choice not in _CHOICE_STRINGS:
            review.refuse(f"tool_choice {choice[:40]!r} cannot be judged")
            out["tool_choice"] = None
        elif choice == "required" and not left and "tools" in out:
            _rewrite(review, choice, None, out)
        return
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        review.refuse(f"tool_choice {orjson.dumps(choice).decode()[:80]} cannot be judged")
        out["tool_choice"] = None
        return
    if choice["type"] == "allowed_tools":
        _allowed_tools(review, choice, left, out)
        return
    name = tool_name(choice)
    if review.check(name, None, "request", "tool_choice") and safe_name(name) in review.offered:
        return
    _rewrite(review, choice, "auto" if left else None, out)


def _allowed_tools(review: _Review, choice: dict[str, Any], left: bool, out: dict[str, Any]) -> None:
    """``{type: allowed_tools, mode, tools: [...]}``: keep the entries that name a tool still offered."""
    tools = choice.get("tools")
    if not isinstance(tools, list):
        review.refuse("tool_choice.tools is not a list, so it cannot be judged")
        out["tool_choice"] = "auto" if left else None
        return
    kept = []
    for i, entry in enumerate(tools):
        review.lookalikes(entry, f"tool_choice.tools[{i}]")
        name = tool_name(entry) if isinstance(entry, dict) else None
        if review.check(name, None, "request", "tool_choice") and safe_name(name) in review.offered:
            kept.append(entry)
    if len(kept) == len(tools):
        return
    _rewrite(review, choice, {**choice, "tools": kept} if kept else ("auto" if left else None), out)


def _rewrite(review: _Review, choice: Any, replacement: Any, out: dict[str, Any]) -> None:
    out["tool_choice"] = replacement
    if review.policy.mode == "strip":
        outcome = "removed" if replacement is None else f"rewritten to {orjson.dumps(replacement).decode()[:120]}"
        record(review.ctx, review.policy, None, "rewritten", "request", "tool_choice-rewrite",
               f"tool_choice {orjson.dumps(choice).decode()[:200]} no longer fits the allowed tools; {outcome}")


def _history(review: _Review, items: list[Any], out: dict[str, Any]) -> None:
    """Past calls decided on name and arguments; the items answering a removed call go with it."""
    removed: set[str] = set()
    kept = []
    for i, item in enumerate(items):
        review.lookalikes(item, f"input[{i}]", "history")
        if responses_keys.answers(item, removed):
            continue
        if isinstance(item, dict) and responses_keys.is_call_type(item.get("type")) \
                and item.get("type") not in responses_keys.UPSTREAM_RUN - {"mcp_call"}:
            name, arguments = responses_keys.call_facts(item, review.mcp_servers)
            if not review.check(name, arguments, "history", "past call to tool"):
                removed |= responses_keys.call_ids(item)
                continue
        kept.append(item)
    if len(kept) != len(items):
        out["input"] = kept


def review_responses_request(ctx: RequestContext) -> None:
    """Filter ``ctx.payload`` (a Responses body) in place, or raise PolicyViolation (403) in block mode."""
    policy = policy_for(ctx.snapshot, ctx.role)
    ctx.tool_policy = policy
    payload = ctx.payload
    review = _Review(ctx, policy)
    review.lookalikes(payload, "$")
    out: dict[str, Any] = {}
    kept = review.tools(payload, out)
    _choice(review, payload, kept, out)
    items = payload.get("input")
    if isinstance(items, list):
        _history(review, items, out)
    review.conclude(payload, out)
