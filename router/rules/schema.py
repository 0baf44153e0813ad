"""The shape of a rule file (``routing_rules/*.yaml``), validated by pydantic. Unknown fields are errors.

    rules:
      - name: big-prompts
        when: {prompt_tokens: {min: 30000}}
        route: {strategy: cheapest, pool: [a, b, c]}
    default:
      route: {deployments: [a, b]}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from router.config.schema import Strict

Patterns = str | list[str]
"""A glob (``gpt-4*``), an exact name, or ``re:<regex>`` (full match); a list matches any of them."""


class TokenRange(Strict):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> TokenRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max}): the rule could never match")
        return self


class MatchSpec(Strict):
    """Every field given must hold (they are and-ed); ``all``, ``any`` and ``not`` compose nested matches."""

    model: Patterns | None = None
    agent: Patterns | None = None
    role: Patterns | None = None
    headers: dict[str, Patterns] | None = Field(
        default=None, description="x-agent-router-* request headers (the prefix may be left out), or Claude Code's "
                                  "x-claude-code-*, anthropic-* and Codex's session_id and originator headers by "
                                  "their full names.")
    metadata: dict[str, Patterns] | None = Field(default=None, description="The OpenAI 'metadata' field's values.")
    user: Patterns | None = None
    api: Patterns | None = Field(default=None, description="The caller's wire format: chat, messages, responses or "
                                                       "embeddings.")
    tools: bool | None = Field(default=None, description="true: the request offers tools (or functions).")
    stream: bool | None = None
    prompt_tokens: TokenRange | None = None
    all: list[MatchSpec] | None = None
    any: list[MatchSpec] | None = None
    not_: MatchSpec | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _not_empty(self) -> MatchSpec:
        if not self.model_fields_set:
            raise ValueError("an empty condition; leave 'when' out for a rule that matches every request")
        for name in ("all", "any"):
            value = getattr(self, name)
            if value is not None and not value:
                raise ValueError(f"'{name}' needs at least one condition")
        return self


class SplitArm(Strict):
    weight: float = Field(gt=0)
    deployments: list[str] = Field(min_length=1)
    name: str | None = Field(default=None, description="Shown in explain and the plan reason; defaults to the "
                                                        "first deployment.")

    @model_validator(mode="before")
    @classmethod
    def _one_deployment_shorthand(cls, value: Any) -> Any:
        """``{deployment: a, weight: 10}`` is shorthand for ``{deployments: [a], weight: 10}``."""
        if isinstance(value, dict) and "deployment" in value and "deployments" not in value:
            value = dict(value)
            value["deployments"] = [value.pop("deployment")]
        return value


class RouteSpec(Strict):
    """Exactly one of: ``deployments`` (a chain), ``model`` (a public model's chain), ``split``, ``strategy``."""

    deployments: list[str] | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, description="A public model from the config's models: section.")
    split: list[SplitArm] | None = Field(default=None, min_length=1)
    sticky: Literal["agent", "user"] | None = Field(
        default=None, description="Keep each agent (or OpenAI user) on the same split arm.")
    strategy: Literal["cheapest", "lowest_latency", "least_busy"] | None = None
    pool: list[str] | None = Field(default=None, min_length=1)
    set_: dict[str, Any] = Field(default_factory=dict, alias="set", description="Fields forced onto the request.")
    cap: dict[str, float] = Field(default_factory=dict, description="Numeric fields capped at a maximum.")

    @model_validator(mode="after")
    def _one_kind(self) -> RouteSpec:
        kinds = [name for name in ("deployments", "model", "split", "strategy") if getattr(self, name) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            raise ValueError(f"a route is exactly one of: deployments, model, split, strategy (found: {found})")
        if self.strategy is not None and self.pool is None:
            raise ValueError(f"strategy {self.strategy!r} needs a pool of deployments")
        if self.pool is not None and self.strategy is None:
            raise ValueError("pool is only for a strategy route")
        if self.sticky is not None and self.split is None:
            raise ValueError("sticky is only for a split route")
        return self

    @field_validator("set_")
    @classmethod
    def _settable(cls, value: dict[str, Any]) -> dict[str, Any]:
        fixed = sorted(set(value) & {"model", "messages", "stream", "stream_options"})
        if fixed:
            raise ValueError(f"a route cannot set {', '.join(fixed)} (the router and the caller own them)")
        return value

    @field_validator("cap")
    @classmethod
    def _positive_caps(cls, value: dict[str, float]) -> dict[str, float]:
        for name, cap in value.items():
            if cap <= 0:
                raise ValueError(f"cap {name} must be positive")
        return {name: int(cap) if float(cap).is_integer() else cap for name, cap in value.items()}


class RuleSpec(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:/-]+$")
    description: str | None = None
    when: MatchSpec | None = Field(default=None, description="Leave out to match every request.")
    route: RouteSpec


class DefaultSpec(Strict):
    name: str = Field(default="default", min_length=1, pattern=r"^[A-Za-z0-9_.:/-]+$")
    description: str | None = None
    route: RouteSpec


MatchSpec.model_rebuild()
