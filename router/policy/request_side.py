"""Request side: keep only the tools, functions, tool_choice and history the role allows.

Runs before anything reaches a provider. ``strip`` rewrites ``ctx.payload`` so that it stays a valid
request (a ``tool_choice`` that no longer fits becomes ``auto`` or goes away; empty tool lists are
dropped with their companion fields); ``block`` raises PolicyViolation (403) listing every violation;
``audit_only`` changes nothing and records what would have happened. The names of the tools left on
offer are kept in ``ctx.offered_tools`` for the response side, which refuses calls to tools never offered.

The same review applies wherever an upstream may merge tool fields into the request: objects under a key in
:data:`MERGED_OBJECTS` (``extra_body``, spelled in any case, with ``_``/``-`` or none), nested up to
:data:`MAX_NESTING` deep. Keys imitating a governed key (``Tools``, ``toolChoice``) are refused (see
:mod:`router.policy.lookalike_keys`); tool fields in a form that cannot be judged (``tools`` not a list, a
merged object that is not an object, nesting too deep) are violations, removed under ``strip``.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys
from router.policy.decide import ToolDecision, ToolPolicy, decide, policy_for
from router.policy.events import record, record_decision
from router.policy.names import safe_name

_NAMED_CHOICE_TYPES = ("function", "custom")
MERGED_OBJECTS = frozenset(("extrabody", "extraargs", "modelkwargs"))
"""Skeletons of keys whose object gateways and SDK-based servers merge into the request (``extra_body``; the
OpenAI Agents SDK's ``extra_args``; LangChain's ``model_kwargs``)."""
MAX_NESTING = 4
_TOOL_LISTS = ("tools", "functions")


def _tool_name(tool: Any) -> Any:
    """The name inside ``{"type": "function", "function": {"name": ...}}`` (or ``custom``); None otherwise."""
    if not isinstance(tool, dict):
        return None
    kind = tool.get("type", "function")
    body = tool.get(kind) if isinstance(kind, str) else None
    return body.get("name") if isinstance(body, dict) else None


def call_arguments(call: dict[str, Any]) -> tuple[Any, str | None]:
    """(name, arguments JSON text) of a tool call or a legacy function_call; (None, None) when it cannot be judged.

    A call carrying both a ``function`` and a ``custom`` body, or a body other than its ``type`` says, is not
    judged: clients disagree on which of the two they run."""
    kinds = [kind for kind in _NAMED_CHOICE_TYPES if kind in call]
    declared = call.get("type")
    if len(kinds) > 1 or (kinds and declared is not None and declared != kinds[0]):
        return None, None
    body = call[kinds[0]] if kinds else call
    if not isinstance(body, dict):
        return None, None
    args = body.get("arguments", body.get("input"))
    if args is not None and not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return body.get("name"), args


class _Review:
    """One pass over a request: decisions recorded, violations listed, the filtered fields collected.

    ``changes`` maps each reviewed object (the request, or an object merged into it) by identity to its own
    changed fields."""

    def __init__(self, ctx: RequestContext, policy: ToolPolicy) -> None:
        self.ctx, self.policy = ctx, policy
        self.violations: list[str] = []
        self.changes: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.offered: set[str] = set()

    def changes_of(self, section: dict[str, Any]) -> dict[str, Any]:
        return self.changes.setdefault(id(section), (section, {}))[1]

    def check(self, name: Any, arguments: str | None, stage: str, what: str) -> bool:
        decision = decide(self.policy, name, arguments)
        record_decision(self.ctx, self.policy, name, decision, stage)
        if not decision.allowed:
            self.violations.append(f"{what} {name!r}: {decision.reason}")
        return decision.allowed

    def refuse_field(self, section: dict[str, Any], field: str, reason: str) -> None:
        """A tool field that cannot be judged: a violation; ``strip`` removes it (a tool list as if emptied, so its
        companion fields go too)."""
        record_decision(self.ctx, self.policy, None, ToolDecision(False, "unjudgeable", reason), "request")
        self.violations.append(reason)
        self.changes_of(section)[field] = [] if field in _TOOL_LISTS else None

    def tool_list(self, section: dict[str, Any], field: str, name_of: Any, where: str) -> list[Any] | None:
        """Filter ``tools`` or ``functions``; the kept entries (None when the field is absent)."""
        entries = section.get(field)
        if entries is None:
            return None
        if not isinstance(entries, list):
            self.refuse_field(section, field, f"{where}{field} is not a list, so its tools cannot be judged")
            return []
        what = where + field[:-1]
        kept = []
        for entry in entries:
            name = name_of(entry)
            if self.check(name, None, "request", what):
                kept.append(entry)
                self.offered.add(safe_name(name) or "")
        if len(kept) != len(entries):
            self.changes_of(section)[field] = kept
        return kept

    def choice(self, section: dict[str, Any], field: str, value: Any, name: Any, kept: list[Any] | None,
               stripped_any: bool) -> None:
        """Keep a ``tool_choice``/``function_call`` valid: check the tool it names, rewrite what no longer fits."""
        if name is not None:
            if self.check(name, None, "request", field):
                return
        elif not (value == "required" and kept is not None and not kept and stripped_any):
            return
        self.rewrite(section, field, value, "auto" if kept else None)

    def rewrite(self, section: dict[str, Any], field: str, value: Any, replacement: str | None) -> None:
        self.changes_of(section)[field] = replacement
        if self.policy.mode == "strip":
            outcome = f"rewritten to {replacement!r}" if replacement else "removed"
            record(self.ctx, self.policy, None, "rewritten", "request", f"{field}-rewrite",
                   f"{field} {orjson.dumps(value).decode()} no longer fits the allowed tools; {outcome}")

    def history(self, section: dict[str, Any], messages: list[Any]) -> None:
        """Strip calls to disallowed tools from past assistant messages, and the results that answer them."""
        stripped_ids: set[str] = set()
        stripped_functions: list[str] = []
        out: list[Any] = []
        changed = False
        for message in messages:
            if not isinstance(message, dict):
                out.append(message)
                continue
            role = message.get("role")
            if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
                new = self._assistant(message, stripped_ids, stripped_functions)
                changed = changed or new is not message
                if new is not None:
                    out.append(new)
            elif role == "tool" and message.get("tool_call_id") in stripped_ids:
                changed = True
            elif role == "function" and message.get("name") in stripped_functions:
                stripped_functions.remove(message["name"])
                changed = True
            else:
                out.append(message)
        if changed:
            self.changes_of(section)["messages"] = out

    def _assistant(self, message: dict[str, Any], stripped_ids: set[str],
                   stripped_functions: list[str]) -> dict[str, Any] | None:
        calls = message.get("tool_calls")
        new = message
        if isinstance(calls, list) and calls:
            kept = []
            for call in calls:
                name, args = call_arguments(call) if isinstance(call, dict) else (None, None)
                if self.check(name, args, "history", "past call to tool"):
                    kept.append(call)
                elif isinstance(call, dict) and isinstance(call.get("id"), str):
                    stripped_ids.add(call["id"])
            if len(kept) != len(calls):
                new = {k: v for k, v in message.items() if k != "tool_calls"}
                if kept:
                    new["tool_calls"] = kept
        legacy = message.get("function_call")
        if isinstance(legacy, dict):
            name, args = call_arguments({"function": legacy})
            if not self.check(name, args, "history", "past call to function"):
                new = {k: v for k, v in new.items() if k != "function_call"}
                stripped_functions.append(name)
        if new is not message and not new.get("tool_calls") and not new.get("function_call") \
                and not new.get("content"):
            return None
        return new


def _named(choice: Any, kind_field: str) -> Any:
    """The tool name a ``tool_choice`` / ``function_call`` object names, or None for the string forms."""
    if not isinstance(choice, dict):
        return None
    if kind_field == "function_call":
        return choice.get("name")
    kind = choice.get("type")
    body = choice.get(kind) if kind in _NAMED_CHOICE_TYPES else None
    return body.get("name") if isinstance(body, dict) else None


def _allowed_tools_choice(review: _Review, section: dict[str, Any], choice: dict[str, Any],
                          kept: list[Any] | None) -> None:
    """``{"type": "allowed_tools", "allowed_tools": {"mode", "tools": [...]}}``: narrow its list too."""
    spec = choice.get("allowed_tools")
    if not isinstance(spec, dict):
        return
    tools = spec.get("tools")
    if not isinstance(tools, list):
        return
    narrowed = [t for t in tools if review.check(_tool_name(t), None, "request", "tool_choice.allowed_tools")]
    if len(narrowed) == len(tools):
        return
    if narrowed:
        review.changes_of(section)["tool_choice"] = {**choice, "allowed_tools": {**spec, "tools": narrowed}}
    else:
        review.rewrite(section, "tool_choice", choice, "auto" if kept else None)


def _review_section(review: _Review, section: dict[str, Any], where: str) -> None:
    """Review the tool fields of the request or of one object merged into it (``where`` names it in messages)."""
    tools = review.tool_list(section, "tools", _tool_name, where)
    functions = review.tool_list(section, "functions", lambda f: f.get("name") if isinstance(f, dict) else None,
                                 where)
    changes = review.changes_of(section)
    choice = section.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        _allowed_tools_choice(review, section, choice, tools)
    elif choice is not None:
        review.choice(section, "tool_choice", choice, _named(choice, "tool_choice"), tools, "tools" in changes)
    legacy_choice = section.get("function_call")
    if legacy_choice is not None:
        review.choice(section, "function_call", legacy_choice, _named(legacy_choice, "function_call"), functions,
                      "functions" in changes)
    messages = section.get("messages")
    if isinstance(messages, list):
        review.history(section, messages)
    elif messages is not None and where:
        review.refuse_field(section, "messages", f"{where}messages is not a list, so its history cannot be judged")


def _merged_objects(review: _Review, section: dict[str, Any], where: str, depth: int) -> None:
    """Review every object an upstream may merge into ``section`` (``extra_body`` and kin), recursively."""
    if lookalike_keys.ORDINARY.issuperset(section):
        return
    for key, value in list(section.items()):
        if lookalike_keys.skeleton(key) not in MERGED_OBJECTS:
            continue
        path = f"{where}{key}"
        if not isinstance(value, dict):
            review.refuse_field(section, key, f"{path} is not an object, so the tools it may carry cannot be judged")
        elif depth > MAX_NESTING:
            review.refuse_field(section, key, f"{path} is nested more than {MAX_NESTING} deep")
        else:
            _refuse_lookalikes(review, value, path)
            _review_section(review, value, path + ".")
            _merged_objects(review, value, path + ".", depth + 1)


def _refuse_lookalikes(review: _Review, section: dict[str, Any], where: str) -> None:
    found = lookalike_keys.find(section, lookalike_keys.REQUEST, where)
    if found:
        review.violations.extend(item.describe() for item in found)
        lookalike_keys.refuse(review.ctx, review.policy, found, "request")


def apply_request_policy(ctx: RequestContext) -> None:
    """Filter ``ctx.payload`` in place, or raise PolicyViolation (403) in block mode."""
    policy = policy_for(ctx.snapshot, ctx.role)
    ctx.tool_policy = policy
    payload = ctx.payload
    review = _Review(ctx, policy)
    _refuse_lookalikes(review, payload, "$")
    _review_section(review, payload, "")
    _merged_objects(review, payload, "", 1)
    ctx.offered_tools = frozenset(review.offered - {""})
    if not review.violations or policy.mode == "audit_only":
        return
    if policy.mode == "block":
        raise PolicyViolation(f"role {policy.role!r} may not use: " + "; ".join(review.violations),
                              param="tools")
    for section, changes in review.changes.values():
        _apply(section, changes)


def _apply(payload: dict[str, Any], changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        if value is None:
            payload.pop(field, None)
        else:
            payload[field] = value
    if changes.get("tools") == []:
        for field in ("tools", "tool_choice", "parallel_tool_calls"):
            payload.pop(field, None)
    if changes.get("functions") == []:
        for field in ("functions", "function_call"):
            payload.pop(field, None)
