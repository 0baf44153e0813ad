"""The top-level ``limits:`` section: settings that apply to every agent, not to one role or agent."""

from __future__ import annotations

from pydantic import Field

from router.config.roles_schema import LimitSpec
from router.config.schema import Strict


class LimitsSection(Strict):
    agent_defaults: LimitSpec = Field(
        default_factory=LimitSpec,
        description="Limits for every agent, field by field, where the agent's own `limits` leave a field unset.",
    )
