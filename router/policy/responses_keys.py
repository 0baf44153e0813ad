"""The Responses wire's vocabulary for the tool policy: which items are calls, what tool each is decided as, and
the look-alike keys (``Call_Id``, ``Server_URL``, ``Output_Index``) refused on this wire.

Item types are an open set: a type the router does not know is kept, unless it ends in ``_call`` in some spelling
(``Function_Call``, ``functionCall``): then it is a call, decided on its type, so a new kind of client-executed
call is denied until a rule allows it. Calls the upstream ran itself (web search, file search, code interpreter,
image generation, MCP) are results by the time they reach the client and pass as they are.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from router.policy.lookalike_keys import LookAlike, skeleton
from router.policy.names import normalize

GOVERNED = frozenset((
    "type", "name", "arguments", "input", "id", "call_id", "tools", "tool_choice", "output", "item", "output_index",
    "delta", "server_label", "server_url", "connector_id", "allowed_tools", "mode", "role", "content", "response",
    "action", "operation", "item_id", "sequence_number"))
"""Every key the Responses policy reads or that decides where a call belongs."""

_BY_SKELETON = {skeleton(key): key for key in GOVERNED}

_FREQUENT = (
    "object", "created_at", "status", "error", "incomplete_details", "instructions", "max_output_tokens", "model",
    "parallel_tool_calls", "previous_response_id", "reasoning", "store", "temperature", "text", "top_p",
    "truncation", "usage", "user", "metadata", "content_index", "part", "logprobs", "annotations", "summary",
    "encrypted_content", "strict", "parameters", "description", "background", "service_tier", "prompt_cache_key",
    "safety_identifier", "max_tool_calls", "top_logprobs", "billing", "conversation", "prompt", "format",
    "verbosity", "effort", "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details",
    "total_tokens", "cached_tokens", "reasoning_tokens", "cache_write_tokens", "code", "message", "param",
    "refusal", "phase", "include", "obfuscation", "summary_index", "require_approval", "headers", "completed_at")
ORDINARY = GOVERNED | frozenset(key for key in _FREQUENT if skeleton(key) not in _BY_SKELETON)
"""Governed keys and the frequent Responses keys that imitate none of them: an object whose keys are all in it
has no look-alike, decided in one C-level set test (every event of a stream asks)."""

UPSTREAM_RUN = frozenset((
    "web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call", "mcp_call",
    "mcp_list_tools", "mcp_approval_request", "reasoning", "message"))
"""Output items the upstream produced or ran itself: the answer side passes them."""

_CALL_TOOL = {"local_shell_call": "local_shell", "shell_call": "shell", "apply_patch_call": "apply_patch",
              "computer_call": "computer_use"}
_CALL_ARGUMENTS = {"local_shell_call": "action", "shell_call": "action", "apply_patch_call": "operation",
                   "computer_call": "action"}
_DATED = re.compile(r"_\d{4}_\d{2}_\d{2}\Z")
_FAMILIES = {
    "web_search": "web_search", "web_search_preview": "web_search", "file_search": "file_search",
    "code_interpreter": "code_interpreter", "computer_use_preview": "computer_use", "computer": "computer_use",
    "computer_use": "computer_use", "local_shell": "local_shell", "shell": "shell", "apply_patch": "apply_patch",
    "image_generation": "image_generation"}


def find(node: Any, where: str) -> list[LookAlike]:
    """The look-alike keys of one object (not its children); empty for anything but a dict."""
    if type(node) is not dict or ORDINARY.issuperset(node):
        return []
    found = []
    for key in node:
        if key not in GOVERNED and isinstance(key, str):
            target = _BY_SKELETON.get(skeleton(key))
            if target is not None:
                found.append(LookAlike(node, where, key, target))
    return found


def tool_family(kind: str) -> str:
    """The tool a hosted tool type is decided as: ``web_search_preview_2025_03_11`` -> ``web_search``,
    ``computer_use_preview`` -> ``computer_use``; a type the router does not know, as given."""
    return _FAMILIES.get(_DATED.sub("", kind), kind)


def is_call_type(kind: object) -> bool:
    """Whether an item ``type`` is a call or imitates one (``Function_Call``, ``function-call``)."""
    if not isinstance(kind, str):
        return False
    return normalize(kind).endswith("_call") or skeleton(kind).endswith("call")


def is_client_call(item: Any) -> bool:
    """A call the client would execute (so the policy decides it); upstream-run items are not."""
    return isinstance(item, dict) and item.get("type") not in UPSTREAM_RUN and is_call_type(item.get("type"))


def mcp_arguments(tool: dict[str, Any]) -> str:
    """An ``mcp`` tool's server as the arguments its conditions see (never its ``headers``: they hold tokens)."""
    facts = {key: tool[key] for key in ("server_label", "server_url", "connector_id") if isinstance(tool.get(key), str)}
    return orjson.dumps(facts).decode()


def call_facts(item: dict[str, Any], mcp_servers: dict[str, str] | None = None) -> tuple[Any, str]:
    """The tool a call item is decided as and its arguments as JSON text (``"\\u0000"``, which no condition can
    read, when they are not of the expected shape).

    ``function_call`` and ``custom_tool_call`` by ``name`` (a custom tool's free-text ``input`` as
    ``{"input": ...}``); shell, patch and computer calls by their tool family with their action; ``mcp_call`` as
    ``mcp:<server_label>`` with the server facts of the request's tool of that label (``mcp_servers``); any other
    call by its type, with the whole item."""
    kind = item.get("type")
    if kind == "function_call":
        arguments = item.get("arguments")
        return item.get("name"), arguments if isinstance(arguments, str) else "\x00"
    if kind == "custom_tool_call":
        text = item.get("input")
        return item.get("name"), orjson.dumps({"input": text}).decode() if isinstance(text, str) else "\x00"
    if kind == "mcp_call":
        label = item.get("server_label")
        if not isinstance(label, str):
            return None, "\x00"
        known = (mcp_servers or {}).get(label)
        return f"mcp:{label}", known or orjson.dumps({"server_label": label}).decode()
    if isinstance(kind, str) and kind in _CALL_TOOL:
        value = item.get(_CALL_ARGUMENTS[kind])
        return _CALL_TOOL[kind], orjson.dumps(value).decode() if isinstance(value, dict) else "\x00"
    return kind, _json_object(item)


def _json_object(item: dict[str, Any]) -> str:
    try:
        return orjson.dumps(item).decode()
    except TypeError:
        return "\x00"


def answers(item: Any, removed: set[str]) -> bool:
    """Whether ``item`` answers a removed call: the same ``call_id``, or an ``*_output`` item whose ``id`` names
    the call (``local_shell_call_output`` does so)."""
    if not isinstance(item, dict) or not removed:
        return False
    call_id = item.get("call_id")
    if isinstance(call_id, str) and call_id in removed:
        return True
    kind, ref = item.get("type"), item.get("id")
    return isinstance(kind, str) and kind.endswith("_output") and isinstance(ref, str) and ref in removed


def call_ids(item: dict[str, Any]) -> set[str]:
    """The ids other items may answer a call by."""
    return {value for key in ("call_id", "id") if isinstance(value := item.get(key), str)}
