"""Compile every role's tool policy at config load, so a bad pattern or condition refuses the config.

Problems carry the file and line of the offending entry. A condition's JSON path is checked for syntax
only: the tools' argument schemas arrive with each request, not in the config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from router.config.errors import ConfigProblem
from router.config.yaml_source import YamlDoc
from router.mcp.policy import McpPolicy, compile_mcp_role
from router.policy.conditions import ConditionError
from router.policy.decide import DEFAULT_MAX_CALL_BYTES, ToolPolicy, compile_role, max_call_bytes_of

P = TypeVar("P")


def _each_role(spec: Any, doc: YamlDoc, problems: list[ConfigProblem], compile_one: Callable[[str, Any, int], P],
               report_limit: bool) -> dict[str, P]:
    try:
        limit = max_call_bytes_of(spec.policy)
    except ConditionError as exc:
        if report_limit:
            problems.append(doc.problem(("policy", *exc.loc), str(exc)))
        limit = DEFAULT_MAX_CALL_BYTES
    compiled: dict[str, P] = {}
    for name, role in spec.roles.items():
        try:
            compiled[name] = compile_one(name, role, limit)
        except ConditionError as exc:
            problems.append(doc.problem(("roles", name, *exc.loc), f"roles.{name}: {exc}"))
    return compiled


def compile_tool_policies(spec: Any, doc: YamlDoc, problems: list[ConfigProblem]) -> dict[str, ToolPolicy]:
    """Compiled model-plane policies by role name; each problem found is appended to ``problems``."""
    return _each_role(spec, doc, problems, compile_role, report_limit=True)


def compile_mcp_policies(spec: Any, doc: YamlDoc, problems: list[ConfigProblem]) -> dict[str, McpPolicy]:
    """Compiled tool-plane policies by role name (a bad ``policy`` section is reported once, above)."""
    return _each_role(spec, doc, problems, compile_mcp_role, report_limit=False)
