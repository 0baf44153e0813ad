"""A role's tool rules compiled into a :class:`ToolPolicy`, and the one function that decides a call.

Order of a decision: the name must be safe (see :mod:`router.policy.names`); a deny pattern wins; then
an allow pattern must match (no allow pattern matching means not allowed: least privilege); then every
condition whose tool pattern matches is evaluated on the arguments, and a matching or undecidable
condition denies. Pure and cheap: compiled once per snapshot and role; the part of a decision that depends
on the name alone is memoised per policy and name (bounded), so a request re-decides only arguments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from router.config.roles_schema import RoleSpec, ToolRules
from router.errors import PolicyViolation
from router.policy.conditions import CompiledCondition, ConditionError, compile_condition
from router.policy.names import MEMO_MAX_CHARS, compile_pattern, safe_name

DEFAULT_MAX_CALL_BYTES = 64 * 1024
DEFAULT_NOTICE = "[agent-router] removed a call to tool '{tool}': not allowed for role '{role}' ({reason})"
_CACHE_KEY = "tool_policies"
NAME_CACHE_SIZE = 4096


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Parsers disagree on which of two equal keys wins, so arguments that repeat a key are not checkable."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _DuplicateKey("duplicate key")
    return dict(pairs)


_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)
"""One decoder for every duplicate-key check (building one per call costs more than the check)."""

_KEY_ENDS = re.compile(r'"\s*:')


def _key_count(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_key_count(item) for item in value.values())
    if isinstance(value, list):
        return sum(_key_count(item) for item in value)
    return 0


def may_repeat_a_key(text: str, parsed: Any) -> bool:
    """False when ``text`` cannot hold a repeated key, decided without a second (slow, pure-Python) parse.

    Every key in the text ends with ``"`` then ``:``; a string value may hold that sequence too, so the matches
    are at least the keys written. When they equal the keys the parse kept, no key was dropped, so none was
    repeated; otherwise the strict parse decides."""
    return len(_KEY_ENDS.findall(text)) != _key_count(parsed)


def repeats_a_key(text: str) -> bool:
    """Whether JSON ``text`` repeats a key anywhere (text that is not JSON: False, its parser will say so). The
    fast parse and a count of key endings settle the usual text; only a doubtful one is parsed strictly."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    if not may_repeat_a_key(text, parsed):
        return False
    try:
        _STRICT_JSON.decode(text)
    except _DuplicateKey:
        return True
    except ValueError:
        return False
    return False


@dataclass(frozen=True)
class ToolDecision:
    allowed: bool
    rule: str
    """Which rule decided: ``allow:<pattern>``, ``deny:<pattern>``, ``condition:<tool>#<n>``, ``default-deny``,
    ``unsafe-name``, ``invalid-arguments``, ``no-role``."""
    reason: str
    pending: bool = False
    """Allowed by name, but a condition applies and no arguments were given to check it."""
    shadow: tuple[tuple[str, str], ...] = ()
    """``(rule, reason)`` of each shadow rule that would have denied this allowed call: recorded as would_deny,
    never enforced. Rules read ``shadow:deny:<pattern>`` or ``shadow:condition:<tool>#<n>``."""


@dataclass(frozen=True, slots=True)
class _NameVerdict:
    """What the name alone decides: the decision when no arguments are known, and what arguments need."""

    decision: ToolDecision
    canonical: str | None
    allowed_by: str | None
    applicable: tuple[CompiledCondition, ...]


@dataclass(frozen=True)
class ToolPolicy:
    role: str | None
    mode: str
    notice: str | None
    allow: tuple[tuple[str, re.Pattern[str]], ...]
    deny: tuple[tuple[str, re.Pattern[str]], ...]
    conditions: tuple[CompiledCondition, ...]
    version: str
    max_call_bytes: int = DEFAULT_MAX_CALL_BYTES
    shadow_deny: tuple[tuple[str, re.Pattern[str], str | None], ...] = ()
    """Deny patterns in shadow: ``(text, pattern, reason)``."""
    by_name: dict[str, _NameVerdict] = field(default_factory=dict, compare=False, hash=False, repr=False)
    """Memo of :func:`decide`'s name-only part (pure), filled as names are seen; cleared when full."""

    def has_conditions_for(self, canonical: str) -> bool:
        return any(cond.matcher.fullmatch(canonical) for cond in self.conditions)

    def notice_for(self, tool: str, reason: str) -> str:
        """The configured notice (placeholders ``{tool}``, ``{role}``, ``{reason}``) for one removed call."""
        template = self.notice or DEFAULT_NOTICE
        return (template.replace("{tool}", tool).replace("{role}", self.role or "(none)")
                .replace("{reason}", reason))


NO_ROLE = ToolPolicy(role=None, mode="strip", notice=None, allow=(), deny=(), conditions=(), version="none")
"""Callers whose role is unknown get no tools at all (fail closed)."""


def policy_version(name: str, role: RoleSpec) -> str:
    """A short hash of the role's tool policy as configured, recorded with every audit event."""
    body = {"role": name, "tools": role.tools.model_dump(mode="json", by_alias=True),
            "on_violation": role.on_violation, "notice": role.notice}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def compile_role(name: str, role: RoleSpec, max_call_bytes: int = DEFAULT_MAX_CALL_BYTES) -> ToolPolicy:
    """Compile one role; ConditionError with a location (relative to the role) when any part is invalid."""
    if not role.models and not role.tools.allow and not role.mcp.servers:
        raise ConditionError(f"role {name!r} is empty: it grants no models, no tools and no MCP servers (list "
                             "models, tools.allow and/or mcp.servers)")
    allow, deny, shadow_deny, conditions = compile_rules(role.tools, ("tools",), compile_pattern)
    return ToolPolicy(role=name, mode=role.on_violation, notice=role.notice, allow=allow, deny=deny,
                      conditions=conditions, version=policy_version(name, role), max_call_bytes=max_call_bytes,
                      shadow_deny=shadow_deny)


Patterns = tuple[tuple[str, re.Pattern[str]], ...]
ShadowPatterns = tuple[tuple[str, re.Pattern[str], str | None], ...]


def compile_rules(rules: ToolRules, loc: tuple[str | int, ...], pattern_of: Callable[[str], re.Pattern[str]]
                  ) -> tuple[Patterns, Patterns, ShadowPatterns, tuple[CompiledCondition, ...]]:
    """Allow, enforced deny, shadow deny patterns and conditions of one ``tools`` section (either plane:
    ``pattern_of`` turns a written pattern into the regex over the names that plane decides on)."""
    def compiled(text: str, where: tuple[str | int, ...]) -> re.Pattern[str]:
        try:
            return pattern_of(text)
        except ValueError as exc:
            raise ConditionError(str(exc), where) from None

    allow = tuple((text, compiled(text, (*loc, "allow", i))) for i, text in enumerate(rules.allow))
    deny: list[tuple[str, re.Pattern[str]]] = []
    shadow_deny: list[tuple[str, re.Pattern[str], str | None]] = []
    for i, entry in enumerate(rules.deny_rules()):
        pattern = compiled(entry.pattern, (*loc, "deny", i))
        if entry.shadow:
            shadow_deny.append((entry.pattern, pattern, entry.reason))
        else:
            deny.append((entry.pattern, pattern))
    conditions = []
    for i, cond in enumerate(rules.conditions):
        where: tuple[str | int, ...] = (*loc, "conditions", i)
        matcher = compiled(cond.tool, (*where, "tool"))
        evaluate = compile_condition(cond.when, (*where, "when"))
        conditions.append(CompiledCondition(cond.tool, matcher, evaluate, f"condition:{cond.tool}#{i}", cond.reason,
                                            cond.shadow))
    return allow, tuple(deny), tuple(shadow_deny), tuple(conditions)


def max_call_bytes_of(policy_section: dict[str, Any]) -> int:
    value = policy_section.get("max_tool_call_bytes", DEFAULT_MAX_CALL_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or not 256 <= value <= 16 * 1024 * 1024:
        raise ConditionError("policy.max_tool_call_bytes must be an integer between 256 and 16777216",
                             ("max_tool_call_bytes",))
    return value


def compile_all(roles: dict[str, RoleSpec], policy_section: dict[str, Any]) -> dict[str, ToolPolicy]:
    limit = max_call_bytes_of(policy_section)
    return {name: compile_role(name, role, limit) for name, role in roles.items()}


P = TypeVar("P")


def compiled_for(snapshot: Any, role: str, cache_key: str, compile_one: Callable[[str, RoleSpec, int], P],
                 what: str) -> P:
    """``role``'s policy of one kind from ``snapshot``'s cache (filled at load), compiled and cached when missing
    (hand-built snapshots). A role the snapshot does not define, or whose policy does not compile, raises
    PolicyViolation: a permission decision that cannot be made never lets anything through."""
    cache: dict[str, P] | None = snapshot.extras.get(cache_key)
    if cache is not None and role in cache:
        return cache[role]
    spec = snapshot.roles.get(role)
    if spec is None:
        raise PolicyViolation(f"role {role!r} has no tool policy in the running config", code="policy_unavailable")
    try:
        section = snapshot.spec.policy if snapshot.spec is not None else {}
        compiled = compile_one(role, spec, max_call_bytes_of(section))
    except ConditionError as exc:
        raise PolicyViolation(f"the {what} of role {role!r} does not load: {exc}", code="policy_unavailable") from None
    snapshot.extras.setdefault(cache_key, {})[role] = compiled
    return compiled


def policy_for(snapshot: Any, role: str | None) -> ToolPolicy:
    """The compiled model-plane policy of ``role`` in ``snapshot``; no role: :data:`NO_ROLE` (see
    :func:`compiled_for`)."""
    return NO_ROLE if role is None else compiled_for(snapshot, role, _CACHE_KEY, compile_role, "tool policy")


def decide(policy: ToolPolicy, name: object, arguments: str | None = None) -> ToolDecision:
    """May a call to tool ``name`` with ``arguments`` (JSON text, or None when not known yet) go ahead?"""
    verdict = _name_verdict(policy, name)
    if arguments is None or not verdict.decision.pending:
        return verdict.decision
    assert verdict.canonical is not None and verdict.allowed_by is not None
    decision = _check_arguments(verdict.canonical, verdict.allowed_by, verdict.applicable, arguments)
    if decision.allowed and verdict.decision.shadow:
        return dataclasses.replace(decision, shadow=verdict.decision.shadow + decision.shadow)
    return decision


def _name_verdict(policy: ToolPolicy, name: object) -> _NameVerdict:
    if not isinstance(name, str) or len(name) > MEMO_MAX_CHARS:
        return _decide_name(policy, name)
    verdict = policy.by_name.get(name)
    if verdict is None:
        verdict = _decide_name(policy, name)
        if len(policy.by_name) >= NAME_CACHE_SIZE:
            policy.by_name.clear()
        policy.by_name[name] = verdict
    return verdict


def _decide_name(policy: ToolPolicy, name: object) -> _NameVerdict:
    canonical = safe_name(name)
    if canonical is None:
        return _NameVerdict(ToolDecision(False, "unsafe-name", f"tool name {name!r} is outside the safe character "
                                                               "set (a-z 0-9 _ . : -, at most 64 after "
                                                               "normalisation)"), None, None, ())
    if policy.role is None:
        return _NameVerdict(ToolDecision(False, "no-role", "no role was resolved for this caller, so no tools are "
                                                           "allowed"), canonical, None, ())
    for text, pattern in policy.deny:
        if pattern.fullmatch(canonical):
            return _NameVerdict(ToolDecision(False, f"deny:{text}", f"tool '{canonical}' matches deny pattern "
                                                                    f"'{text}'"), canonical, None, ())
    allowed_by = next((text for text, pattern in policy.allow if pattern.fullmatch(canonical)), None)
    if allowed_by is None:
        return _NameVerdict(ToolDecision(False, "default-deny", f"tool '{canonical}' is not in the allow list of "
                                                                f"role '{policy.role}'"), canonical, None, ())
    applicable = tuple(cond for cond in policy.conditions if cond.matcher.fullmatch(canonical))
    shadow = tuple((f"shadow:deny:{text}", reason or f"tool '{canonical}' matches shadow deny pattern '{text}'")
                   for text, pattern, reason in policy.shadow_deny if pattern.fullmatch(canonical))
    if not applicable:
        decision = ToolDecision(True, f"allow:{allowed_by}", f"tool '{canonical}' matches allow pattern "
                                                             f"'{allowed_by}'", shadow=shadow)
    else:
        decision = ToolDecision(True, f"allow:{allowed_by}", f"tool '{canonical}' is allowed; its arguments are "
                                                             "checked on each call", pending=True, shadow=shadow)
    return _NameVerdict(decision, canonical, allowed_by, applicable)


def _check_arguments(canonical: str, allowed_by: str, applicable: tuple[CompiledCondition, ...],
                     arguments: str) -> ToolDecision:
    """The conditions that apply to an allowed tool, evaluated on one call's arguments."""
    try:
        parsed = orjson.loads(arguments)
        if "{" in arguments and may_repeat_a_key(arguments, parsed):
            _STRICT_JSON.decode(arguments)
    except (orjson.JSONDecodeError, _DuplicateKey):
        return ToolDecision(False, "invalid-arguments", f"arguments of '{canonical}' are not valid JSON (or repeat "
                                                        "a key), so its conditions cannot be checked")
    if not isinstance(parsed, dict):
        return ToolDecision(False, "invalid-arguments", f"arguments of '{canonical}' are not a JSON object")
    shadow: list[tuple[str, str]] = []
    for cond in applicable:
        verdict = cond.evaluate(parsed)
        if verdict is None:
            reason = f"condition on '{cond.tool}' cannot be evaluated on these arguments (missing value or wrong type)"
        elif verdict:
            reason = cond.reason or f"arguments of '{canonical}' match a denying condition"
        else:
            continue
        if cond.shadow:
            shadow.append((f"shadow:{cond.rule}", reason))
            continue
        return ToolDecision(False, cond.rule, reason)
    return ToolDecision(True, f"allow:{allowed_by}", f"tool '{canonical}' is allowed and its arguments pass "
                                                     f"{len(applicable)} condition(s)", shadow=tuple(shadow))


def decide_call(policy: ToolPolicy, offered: frozenset[str], name: object, arguments: str | None) -> ToolDecision:
    """Decide a call the model made: the role must allow it AND the (filtered) request must have offered it."""
    decision = decide(policy, name, arguments)
    if decision.allowed and safe_name(name) not in offered:
        return ToolDecision(False, "not-offered", f"tool '{safe_name(name)}' was not offered in the request")
    return decision
