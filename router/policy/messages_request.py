"""Request side on the Messages wire: keep only the tools, ``tool_choice`` and history the role allows.

The same contract as :func:`router.policy.request_side.apply_request_policy`, over an Anthropic Messages body:

- ``tools``: client tools ``{name, input_schema}`` and Anthropic's typed tools (``{type: "bash_20250124", name:
  "bash"}``, ``text_editor_*``, ``web_search_*``, ``computer_*``...). Every tool is decided on its ``name``; a typed
  tool (a ``type`` other than ``custom``) must also pass a decision on its type's family, the ``type`` without its
  date suffix (``web_search_20250305`` -> ``web_search``). So ``{type: web_search_*, name: "search"}`` is not
  web search for a role that allows ``search``, and a rule on ``text_editor`` governs every version of it.
- ``tool_choice``: a forced ``tool`` naming a removed tool becomes ``auto`` (or goes, with ``tools``, when no
  tool is left); ``any`` with no tool left goes too.
- history: a past call block (``tool_use``, ``server_tool_use``, ``mcp_tool_use``) is decided on its name and
  input (a forged history cannot smuggle a denied call), and the blocks answering it (``tool_use_id``) go with it.
  A message left empty is dropped and neighbours of one role are merged, so user/assistant alternation holds.
- ``mcp_servers``: servers the upstream calls itself, each decided as the tool ``mcp:<server name>``.

``strip`` rewrites ``ctx.payload``; ``block`` raises PolicyViolation listing every violation; ``audit_only``
records only. Shapes that cannot be judged (``tools`` not a list, a tool without a string name, content neither a
list nor a string, a look-alike key) are violations too.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from router.context import RequestContext
from router.policy import messages_keys
from router.policy.decide import policy_for
from router.policy.events import record
from router.policy.names import safe_name
from router.policy.review import Review

_VERSION = re.compile(r"_\d{8}\Z")


def type_family(kind: str) -> str:
    """``web_search_20250305`` -> ``web_search``: what a role's rule on a typed tool names."""
    return _VERSION.sub("", kind)


def block_input(block: dict[str, Any]) -> str | None:
    """A call block's ``input`` as JSON text for the conditions; None when it is not an object."""
    value = block.get("input")
    return orjson.dumps(value).decode() if isinstance(value, dict) else None


class _Review(Review):
    find_lookalikes = staticmethod(messages_keys.find)

    def tool(self, tool: Any, i: int) -> bool:
        self.lookalikes(tool, f"tools[{i}]")
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str):
            self.refuse(f"tools[{i}] has no string name, so it cannot be judged")
            return False
        kind = tool.get("type")
        if kind is not None and not isinstance(kind, str):
            self.refuse(f"tools[{i}] has a type that is not a string, so it cannot be judged")
            return False
        if not self.check(name, None, "request", "tool"):
            return False
        if kind not in (None, "custom") and not self.check(type_family(kind), None, "request", "tool type"):
            return False
        self.offered.add(safe_name(name) or "")
        return True


def _mcp_servers(review: _Review, payload: dict[str, Any], out: dict[str, Any]) -> None:
    """``mcp_servers`` (the MCP connector): the upstream calls these servers itself, so each one is decided as the
    tool ``mcp:<server name>`` before anything leaves; a server the role does not allow is removed."""
    servers = payload.get("mcp_servers")
    if servers is None:
        return
    if not isinstance(servers, list):
        review.refuse("mcp_servers is not a list, so its servers cannot be judged")
        out["mcp_servers"] = None
        return
    kept = []
    for i, server in enumerate(servers):
        review.lookalikes(server, f"mcp_servers[{i}]")
        name = server.get("name") if isinstance(server, dict) else None
        if not isinstance(name, str):
            review.refuse(f"mcp_servers[{i}] has no string name, so it cannot be judged")
        elif review.check(f"mcp:{name}", None, "request", "MCP server"):
            kept.append(server)
            review.offered.add(safe_name(f"mcp:{name}") or "")
    if len(kept) != len(servers):
        out["mcp_servers"] = kept or None


def _choice(review: _Review, payload: dict[str, Any], kept: list[Any] | None, out: dict[str, Any]) -> None:
    choice = payload.get("tool_choice")
    if choice is None:
        return
    review.lookalikes(choice, "tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        review.refuse(f"tool_choice {orjson.dumps(choice).decode()[:80]} cannot be judged")
        out["tool_choice"] = None
        return
    left = bool(kept) if kept is not None else False
    if kind == "tool":
        name = choice.get("name")
        still_offered = safe_name(name) in review.offered
        if review.check(name, None, "request", "tool_choice") and still_offered:
            return
    elif not (kind == "any" and not left and "tools" in out):
        return
    replacement = {"type": "auto"} if left else None
    if isinstance(choice, dict) and "disable_parallel_tool_use" in choice and replacement is not None:
        replacement["disable_parallel_tool_use"] = choice["disable_parallel_tool_use"]
    out["tool_choice"] = replacement
    if review.policy.mode == "strip":
        outcome = "rewritten to auto" if replacement else "removed"
        record(review.ctx, review.policy, None, "rewritten", "request", "tool_choice-rewrite",
               f"tool_choice {orjson.dumps(choice).decode()} no longer fits the allowed tools; {outcome}")


def _history(review: _Review, messages: list[Any], out: dict[str, Any]) -> None:
    """Past calls decided on name and input; the blocks answering a removed call (by ``tool_use_id``) go too."""
    removed_ids: set[str] = set()
    kept_messages: list[Any] = []
    changed = False
    for m, message in enumerate(messages):
        where = f"messages[{m}]"
        review.lookalikes(message, where)
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            kept_messages.append(message)
            continue
        if not isinstance(content, list):
            review.refuse(f"{where}.content is neither a list nor a string, so it cannot be judged", "history")
            changed = True
            continue
        blocks = []
        for b, block in enumerate(content):
            review.lookalikes(block, f"{where}.content[{b}]")
            if _keeps(review, block, removed_ids):
                blocks.append(block)
        if len(blocks) == len(content):
            kept_messages.append(message)
            continue
        changed = True
        if blocks:
            kept_messages.append({**message, "content": blocks})
    if changed:
        out["messages"] = _alternating(kept_messages)


def _keeps(review: _Review, block: Any, removed_ids: set[str]) -> bool:
    if not isinstance(block, dict):
        return True
    answered = block.get("tool_use_id")
    if isinstance(answered, str) and answered in removed_ids:
        return False
    if not messages_keys.is_call_type(block.get("type")):
        return True
    name = messages_keys.call_name(block)
    allowed = review.check(name, block_input(block), "history", "past call to tool")
    if not allowed and isinstance(block.get("id"), str):
        removed_ids.add(block["id"])
    return allowed


def _alternating(messages: list[Any]) -> list[Any]:
    """Merge neighbours of one role (left so by a dropped message): the API wants user and assistant in turn."""
    out: list[Any] = []
    for message in messages:
        previous = out[-1] if out else None
        if isinstance(previous, dict) and isinstance(message, dict) and previous.get("role") == message.get("role"):
            out[-1] = {**previous, "content": _as_blocks(previous.get("content")) + _as_blocks(message.get("content"))}
        else:
            out.append(message)
    return out


def _as_blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def review_messages_request(ctx: RequestContext) -> None:
    """Filter ``ctx.payload`` (a Messages body) in place, or raise PolicyViolation (403) in block mode."""
    policy = policy_for(ctx.snapshot, ctx.role)
    ctx.tool_policy = policy
    payload = ctx.payload
    review = _Review(ctx, policy)
    review.lookalikes(payload, "$")
    out: dict[str, Any] = {}
    kept = review.tools(payload, out)
    _choice(review, payload, kept, out)
    _mcp_servers(review, payload, out)
    messages = payload.get("messages")
    if isinstance(messages, list):
        _history(review, messages, out)
    review.conclude(payload, out)
