"""A role's tool-plane rules compiled into an :class:`McpPolicy`, decided by the model plane's own function.

The policy sees an MCP tool as ``<server>:<tool>`` (canonical, as :mod:`router.policy.names` spells every
tool name). A pattern written with a colon is qualified by server (``github:delete_*``); one without applies
on every server (``delete_*`` is ``*:delete_*``). Allow, deny and argument conditions are then exactly those
of the model plane, and :func:`router.policy.decide.decide` decides: deny wins, no allow means no, a matching
or undecidable condition denies, a look-alike name is refused. A server the role may not reach decides
before any tool pattern.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from router.config.mcp_schema import PERIOD_SECONDS, RoleMcpSpec
from router.config.roles_schema import RoleSpec
from router.policy.conditions import ConditionError
from router.policy.decide import (
    DEFAULT_MAX_CALL_BYTES,
    ToolDecision,
    ToolPolicy,
    compile_rules,
    compiled_for,
    decide,
    max_call_bytes_of,
)
from router.policy.names import compile_pattern, safe_name

_CACHE_KEY = "mcp_policies"


def qualified(server: str, tool: str) -> str:
    """The name the policy decides on: ``<server>:<tool>``."""
    return f"{server}:{tool}"


def qualify_pattern(pattern: str) -> str:
    """``delete_*`` means that tool on every server: ``*:delete_*``; ``github:delete_*`` stays as written."""
    return pattern if ":" in pattern else f"*:{pattern}"


@dataclass(frozen=True, slots=True)
class ToolLimit:
    """One compiled ``limits`` entry: its counter is ``mcp:<scope>:<name>:<index>``."""

    index: int
    pattern: str
    matcher: re.Pattern[str]
    calls: int
    seconds: float
    scope: str

    def key(self, role: str, agent: str | None) -> str:
        who = f"role:{role}" if self.scope == "role" else f"agent:{agent or '-'}"
        return f"mcp:{who}:{role}:{self.index}"


@dataclass(frozen=True)
class McpPolicy:
    role: str | None
    servers: tuple[tuple[str, re.Pattern[str]], ...]
    tools: ToolPolicy
    audit_only: bool
    limits: tuple[ToolLimit, ...]
    version: str

    def may_reach(self, server: str) -> bool:
        """Whether the role may use ``server`` at all (its tools still need an allow pattern)."""
        return self.role is not None and any(pattern.fullmatch(server) for _, pattern in self.servers)

    def limits_for(self, server: str, tool: str) -> tuple[ToolLimit, ...]:
        name = safe_name(qualified(server, tool))
        return () if name is None else tuple(limit for limit in self.limits if limit.matcher.fullmatch(name))


NO_MCP = McpPolicy(role=None, servers=(), audit_only=False, limits=(), version="none",
                   tools=ToolPolicy(role=None, mode="block", notice=None, allow=(), deny=(), conditions=(),
                                    version="none"))
"""Callers without a role reach no server (fail closed)."""


def mcp_policy_version(name: str, spec: RoleMcpSpec) -> str:
    """A short hash of the role's tool-plane rules as configured, recorded with every audit event."""
    body = {"role": name, "mcp": spec.model_dump(mode="json", by_alias=True)}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def compile_mcp_role(name: str, role: RoleSpec, max_call_bytes: int = DEFAULT_MAX_CALL_BYTES) -> McpPolicy:
    """Compile one role's ``mcp`` section; ConditionError with a location (relative to the role) when invalid."""
    spec = role.mcp
    servers = []
    for i, text in enumerate(spec.servers):
        try:
            servers.append((text, compile_pattern(text)))
        except ValueError as exc:
            raise ConditionError(str(exc).replace("tool pattern", "server pattern"), ("mcp", "servers", i)) from None
    allow, deny, shadow_deny, conditions = compile_rules(spec.tools, ("mcp", "tools"),
                                                         lambda text: compile_pattern(qualify_pattern(text)))
    limits = []
    for i, limit in enumerate(spec.limits):
        try:
            matcher = compile_pattern(qualify_pattern(limit.tool))
        except ValueError as exc:
            raise ConditionError(str(exc), ("mcp", "limits", i, "tool")) from None
        limits.append(ToolLimit(i, limit.tool, matcher, limit.calls, PERIOD_SECONDS[limit.per], limit.scope))
    version = mcp_policy_version(name, spec)
    audit_only = spec.on_violation == "audit_only" or (spec.on_violation is None and role.on_violation == "audit_only")
    tools = ToolPolicy(role=name, mode="audit_only" if audit_only else "block", notice=None, allow=allow, deny=deny,
                       conditions=conditions, version=version, max_call_bytes=max_call_bytes, shadow_deny=shadow_deny)
    return McpPolicy(role=name, servers=tuple(servers), tools=tools, audit_only=audit_only, limits=tuple(limits),
                     version=version)


def compile_all_mcp(roles: dict[str, RoleSpec], policy_section: dict[str, Any]) -> dict[str, McpPolicy]:
    limit = max_call_bytes_of(policy_section)
    return {name: compile_mcp_role(name, role, limit) for name, role in roles.items()}


def mcp_policy_for(snapshot: Any, role: str | None) -> McpPolicy:
    """The compiled tool-plane policy of ``role`` in ``snapshot``; no role: :data:`NO_MCP` (fail closed; see
    :func:`router.policy.decide.compiled_for`)."""
    return NO_MCP if role is None else compiled_for(snapshot, role, _CACHE_KEY, compile_mcp_role, "MCP policy")


def decide_tool(policy: McpPolicy, server: str, tool: object, arguments: str | None = None) -> ToolDecision:
    """May the caller call ``tool`` of ``server`` with ``arguments`` (JSON text; None to decide by name only)?"""
    if not policy.may_reach(server):
        return ToolDecision(False, "server-not-allowed", f"role '{policy.role}' may not use MCP server '{server}'")
    if not isinstance(tool, str):
        return ToolDecision(False, "unsafe-name", "the tool name is not a string")
    return decide(policy.tools, qualified(server, tool), arguments)
