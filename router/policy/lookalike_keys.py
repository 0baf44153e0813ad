"""Keys that imitate a governed key (``Tool_Calls``, ``toolCalls``, ``FUNCTION_CALL``, ``Index``, ``Tools``).

The policy reads keys exactly; case-insensitive JSON decoders (Go's ``encoding/json``, System.Text.Json with
``PropertyNameCaseInsensitive``, Jackson with ``ACCEPT_CASE_INSENSITIVE_PROPERTIES``) and snake/camel-case mappers
read such a key as the governed one. A legitimate upstream or client never sends them, so they are never judged as
the key they imitate: they are found here and refused by the caller (removed, refused or recorded, per mode).

A key imitates a governed key when it is spelled differently but has the same *skeleton*: NFKC, case-folded, the
dotless ``ı`` read as ``i`` (.NET and Java fold it so), then only ``a-z 0-9`` kept (``_``, ``-``, spaces, combining
marks and zero-width characters vanish). So ``Tool_Calls``, ``toolCalls``, ``TOOL-CALLS``, ``tool_callſ`` and
``ｔｏｏｌ_ｃａｌｌｓ`` all imitate ``tool_calls``.

Only the levels that carry calls or tool definitions are walked (a tool's ``parameters`` schema is not: its
property names are the tool's business), following a :data:`Shape`: which keys lead one level deeper.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy.decide import ToolDecision, ToolPolicy
from router.policy.events import record_decision

Shape = dict[str, "Shape"]
"""The keys to descend into at one level, each with the shape of its value (lists are walked element-wise)."""

_LEAF: Shape = {}
_CALL: Shape = {"function": _LEAF, "custom": _LEAF}
_MESSAGE: Shape = {"tool_calls": _CALL, "function_call": _LEAF}
ANSWER: Shape = {"choices": {"message": _MESSAGE, "delta": _MESSAGE}}
"""A chat completion or a completion chunk."""
_TOOL: Shape = {"function": _LEAF, "custom": _LEAF}
REQUEST: Shape = {"tools": _TOOL, "functions": _LEAF, "function_call": _LEAF, "messages": _MESSAGE,
                  "tool_choice": {"function": _LEAF, "custom": _LEAF, "allowed_tools": {"tools": _TOOL}}}
"""The tool-bearing parts of a chat request (or of an object an upstream may merge into one)."""

GOVERNED = frozenset((
    "choices", "message", "delta", "tool_calls", "function_call", "function", "custom", "name", "arguments", "input",
    "type", "id", "index", "tools", "functions", "tool_choice", "allowed_tools", "messages", "role", "tool_call_id",
    "parallel_tool_calls"))
"""Every key the policy reads (or that decides where a call belongs); a look-alike of any of them is refused."""

ORDINARY = GOVERNED | frozenset((
    "object", "created", "model", "system_fingerprint", "usage", "service_tier", "logprobs", "finish_reason",
    "content", "refusal", "annotations", "audio", "reasoning_content", "description", "parameters", "strict",
    "format", "mode", "stream", "stream_options", "temperature", "max_tokens", "max_completion_tokens", "metadata",
    "user", "seed", "top_p", "response_format", "stop", "n", "presence_penalty", "frequency_penalty", "logit_bias",
    "top_logprobs", "store", "reasoning_effort", "modalities", "prediction", "verbosity", "web_search_options",
    "safety_identifier", "prompt_cache_key"))
"""Governed keys and frequent keys that imitate nothing: an object whose keys are all ordinary is passed over in
one C-level set test, so the common case costs little."""

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_MEMO_MAX_CHARS = 128


def skeleton(key: str) -> str:
    """What is left of ``key`` once case, compatibility forms and separators are ignored."""
    return _skeleton(key) if len(key) <= _MEMO_MAX_CHARS else _skeleton.__wrapped__(key)


@lru_cache(maxsize=2048)
def _skeleton(key: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold()).replace("ı", "i")
    return "".join(ch for ch in folded if ch in _ALNUM)


_BY_SKELETON = {skeleton(key): key for key in GOVERNED}


def imitated(key: str) -> str | None:
    """The governed key that ``key`` imitates, or None (``key`` is governed itself, or imitates nothing)."""
    if key in ORDINARY:
        return None
    return _BY_SKELETON.get(skeleton(key))


@dataclass(frozen=True, slots=True)
class LookAlike:
    """One look-alike key: where it sits (``choices[0].delta``), its spelling, and the key it imitates."""

    owner: dict[str, Any]
    where: str
    key: str
    imitates: str

    def describe(self) -> str:
        shown = self.key if len(self.key) <= 64 else self.key[:61] + "..."
        return (f"key {shown!r} in {self.where} imitates {self.imitates!r} (case-insensitive decoders read it so), "
                "so it cannot be judged")

    def remove(self) -> None:
        self.owner.pop(self.key, None)


def find(node: Any, shape: Shape, where: str = "$") -> list[LookAlike]:
    """Every look-alike key at the levels ``shape`` names, in document order. Pure; changes nothing."""
    if _clean(node, shape):
        return []
    found: list[LookAlike] = []
    _walk(node, shape, where, found)
    return found


def _clean(node: Any, shape: Shape) -> bool:
    """True when no key at the levels ``shape`` names is outside the ordinary set (so none can be a look-alike):
    the usual answer or chunk, decided with set tests only; anything else takes the walk that names paths."""
    if type(node) is dict:
        if not ORDINARY.issuperset(node):
            return False
        for key in shape.keys() & node.keys():  # noqa: SIM110 (a loop: all() over a generator costs 40% more here)
            if not _clean(node[key], shape[key]):
                return False
        return True
    if type(node) is list:
        for item in node:
            if not _clean(item, shape):
                return False
    return True


def _walk(node: Any, shape: Shape, where: str, found: list[LookAlike]) -> None:
    if isinstance(node, dict):
        _walk_object(node, shape, where, None, found)
    elif isinstance(node, list) and not _plain_objects(node, shape):
        for i, item in enumerate(node):
            if isinstance(item, dict):
                _walk_object(item, shape, where, i, found)


def _plain_objects(items: list[Any], shape: Shape) -> bool:
    """True when every item is an object with only ordinary keys and none to descend into (a long history of
    plain messages, say), decided with the keys of all items at once."""
    try:
        keys = set(chain.from_iterable(items))
    except TypeError:  # an item that is not iterable: look at each
        return False
    return ORDINARY.issuperset(keys) and keys.isdisjoint(shape) and all(type(item) is dict for item in items)


def _walk_object(node: dict[str, Any], shape: Shape, parent: str, index: int | None,
                 found: list[LookAlike]) -> None:
    """One object; its path is spelled out only when something is found or a level below is walked."""
    descend = not shape.keys().isdisjoint(node)
    if ORDINARY.issuperset(node) and not descend:
        return
    where = parent if index is None else f"{parent}[{index}]"
    for key in node:
        target = imitated(key)
        if target is not None:
            found.append(LookAlike(node, where, key, target))
    if descend:
        for key, inner in shape.items():
            child = node.get(key)
            if child is not None:
                _walk(child, inner, f"{where}.{key}" if where != "$" else key, found)


RULE = "look-alike-key"


def refuse(ctx: RequestContext, policy: ToolPolicy, found: list[LookAlike], stage: str) -> int:
    """Refuse every look-alike under the role's mode: each is an audit event; ``strip`` removes them (returns how
    many), ``block`` raises PolicyViolation, ``audit_only`` leaves them."""
    for lookalike in found:
        record_decision(ctx, policy, None, ToolDecision(False, RULE, lookalike.describe()), stage)
    if policy.mode == "block":
        raise PolicyViolation(f"role {policy.role!r}: " + "; ".join(item.describe() for item in found))
    if policy.mode != "strip":
        return 0
    for lookalike in found:
        lookalike.remove()
    return len(found)
