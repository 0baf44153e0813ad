"""Look-alike keys on the Messages wire (``Tool_Use_Id``, ``Content``, ``Partial-JSON``).

The chat vocabulary (:data:`router.policy.lookalike_keys.GOVERNED`) lacks keys the Messages wire governs
(``content`` holds the calls here, ``tool_use_id`` pairs results with calls, ``partial_json`` carries streamed
input), and adding them there would change what chat refuses. So Messages has its own governed set, matched by the
same skeleton (:func:`router.policy.lookalike_keys.skeleton`), and is checked one object at a time: a Messages body
is shallow (request, message, content block; event, block, delta), so the callers name the objects to look at.
"""

from __future__ import annotations

from typing import Any

from router.policy.lookalike_keys import LookAlike, skeleton

GOVERNED = frozenset((
    "type", "name", "input", "id", "tool_use_id", "content", "role", "messages", "tools", "tool_choice", "index",
    "content_block", "delta", "partial_json", "message", "stop_reason", "disable_parallel_tool_use", "server_name",
    "mcp_servers"))
"""Every key the Messages policy reads or that decides where a call belongs."""

_BY_SKELETON = {skeleton(key): key for key in GOVERNED}
CALL_TYPES = frozenset(("tool_use", "server_tool_use", "mcp_tool_use"))
"""Content block types that are calls: the client runs ``tool_use``; the upstream runs the other two."""


def find(node: Any, where: str) -> list[LookAlike]:
    """The look-alike keys of one object (not its children); empty for anything but a dict."""
    if type(node) is not dict or GOVERNED.issuperset(node):
        return []
    found = []
    for key in node:
        if key not in GOVERNED and isinstance(key, str):
            target = _BY_SKELETON.get(skeleton(key))
            if target is not None:
                found.append(LookAlike(node, where, key, target))
    return found


def is_call_type(kind: object) -> bool:
    """Whether a block ``type`` is a call or imitates one (``Tool_Use``, ``tool-use``): fail closed on spellings
    that a lenient client might still read as a call."""
    if kind in CALL_TYPES:
        return True
    return isinstance(kind, str) and skeleton(kind).endswith("tooluse")


def call_name(block: dict[str, Any]) -> Any:
    """The tool a call block is decided as: its ``name``, but ``mcp:<server_name>`` for an ``mcp_tool_use`` (the
    request side decides MCP servers under that name, so a server's tools are governed as one)."""
    if block.get("type") == "mcp_tool_use":
        server = block.get("server_name")
        return f"mcp:{server}" if isinstance(server, str) else None
    return block.get("name")
