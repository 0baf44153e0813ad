"""Roles and agents: who may ask for which models and call which tools. Validated at load time.

Least privilege is the default: a role that lists no tools may use none; ``allow: ["*"]`` is a choice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from router.config.schema import Strict

Operator = Literal["eq", "ne", "in", "not_in", "glob", "regex", "gt", "gte", "lt", "lte", "exists"]


class Condition(Strict):
    """A test on a tool call's arguments: a leaf (path, op, value) or a composition (all / any / not)."""

    path: str | None = Field(default=None, description="JSON path into the arguments: 'environment', '$.a.b[0]'.")
    op: Operator | None = None
    value: Any = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [self.path is not None, self.all is not None, self.any is not None, self.not_ is not None]
        if sum(forms) != 1:
            raise ValueError("a condition is exactly one of: {path, op, value}, all, any, not")
        if self.path is not None and self.op is None:
            raise ValueError("a condition on a path needs an op (eq, ne, in, not_in, glob, regex, gt, gte, lt, lte, "
                             "exists)")
        return self


class ToolCondition(Strict):
    """Deny calls to ``tool`` (a name or glob) whose arguments match ``when``."""

    tool: str
    when: Condition
    reason: str | None = None
    shadow: bool = Field(default=False, description="Decide and record would_deny (rule shadow:...) without "
                                                     "enforcing, while the rest of the role enforces.")


class DenyRule(Strict):
    """A deny pattern in its long form: ``{pattern, shadow, reason}``."""

    pattern: str
    shadow: bool = False
    reason: str | None = None


class ToolRules(Strict):
    allow: list[str] = Field(default_factory=list)
    deny: list[str | DenyRule] = Field(default_factory=list, description="Names or globs, or {pattern, shadow, "
                                                                        "reason} entries.")
    conditions: list[ToolCondition] = Field(default_factory=list)

    def deny_rules(self) -> list[DenyRule]:
        """Every deny entry in its long form."""
        return [DenyRule(pattern=entry) if isinstance(entry, str) else entry for entry in self.deny]


class LimitSpec(Strict):
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    usd_per_day: float | None = Field(default=None, ge=0)
    usd_per_month: float | None = Field(default=None, ge=0)


class RoleSpec(Strict):
    description: str | None = None
    models: list[str] = Field(default_factory=list, description="Public model names or globs this role may request.")
    tools: ToolRules = Field(default_factory=ToolRules)
    on_violation: Literal["strip", "block", "audit_only"] = "strip"
    notice: str | None = Field(default=None, description="Text added to the answer when a tool call is removed.")
    limits: LimitSpec = Field(default_factory=LimitSpec)
    mcp: RoleMcpSpec = Field(default_factory=lambda: RoleMcpSpec(),
                             description="The tool plane: which MCP servers and tools (see mcp_schema).")


class KeySpec(Strict):
    """A key given in config by its hash only (``sha256:<hex>``); the key itself never lives in the file."""

    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    expires: datetime | None = None
    name: str | None = None


class AgentSpec(Strict):
    role: str
    description: str | None = None
    keys: list[KeySpec] = Field(default_factory=list)
    limits: LimitSpec = Field(default_factory=LimitSpec)


from router.config.mcp_schema import RoleMcpSpec  # noqa: E402  (mcp_schema imports ToolRules from here)

RoleSpec.model_rebuild()
