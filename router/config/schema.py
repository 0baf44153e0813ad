"""The shape of the config file, validated by pydantic. Unknown fields are errors, not silently ignored."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ApiName = Literal["chat", "responses"]


class ProviderSpec(Strict):
    """Where and how to reach one upstream. ``api_key`` should be an ``${ENV_VAR}`` reference."""

    type: Literal["openai", "anthropic", "litellm", "mock"]
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=120.0, gt=0, description="Seconds for one upstream attempt.")
    connect_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=256, gt=0)
    api_version: str | None = Field(default=None, description="Azure-style deployments: sent as ?api-version=.")
    options: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments for litellm.")
    proxy: str | None = Field(default=None, description="http(s) proxy URL for this provider; else HTTPS_PROXY / "
                                                        "HTTP_PROXY / NO_PROXY from the environment.")
    ca_bundle: str | None = Field(default=None, description="PEM file of the CAs to trust instead of the system's.")
    client_cert: str | None = Field(default=None, description="PEM client certificate for mutual TLS.")
    client_key: str | None = Field(default=None, description="PEM key of client_cert, when not in the same file.")
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024,
                                    description="Largest whole answer (after decoding); larger is a 502.")
    max_event_bytes: int = Field(default=4 * 1024 * 1024, ge=1024,
                                 description="Largest single stream event; larger ends the stream with a 502.")
    apis: list[ApiName] = Field(
        default_factory=lambda: list[ApiName](["chat"]), min_length=1,
        description="openai providers: the APIs the upstream serves natively, the first being the one other formats "
                    "are translated to (chat: /chat/completions; responses: /responses). [responses] is a "
                    "Responses-only upstream; [chat, responses] passes Responses requests through as they are.")

    @model_validator(mode="after")
    def _needs_base_url(self) -> ProviderSpec:
        if self.type == "openai" and not self.base_url:
            raise ValueError("an openai provider needs base_url (for example https://api.openai.com/v1)")
        if self.type != "openai" and self.apis != ["chat"] and "apis" in self.model_fields_set:
            raise ValueError("apis is for openai providers (anthropic speaks messages; litellm and mock speak chat)")
        if len(set(self.apis)) != len(self.apis):
            raise ValueError("apis lists an API twice")
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        if self.proxy is not None and not self.proxy.startswith(("http://", "https://")):
            raise ValueError("proxy must be an http:// or https:// URL")
        for field, path in (("ca_bundle", self.ca_bundle), ("client_cert", self.client_cert),
                            ("client_key", self.client_key)):
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"{field} {path!r} is not a file")
        return self


class Prices(Strict):
    """USD per million tokens; overrides litellm's price map for this deployment."""

    input_per_million: float | None = Field(default=None, ge=0)
    output_per_million: float | None = Field(default=None, ge=0)
    cached_input_per_million: float | None = Field(default=None, ge=0)
    cache_write_per_million: float | None = Field(default=None, ge=0, description="Prompt-cache writes (Anthropic's "
                                                  "cache creation); the input price when not given.")


class Capabilities(Strict):
    """What the deployment can serve; unset means 'ask litellm's model info, else assume yes'."""

    tools: bool | None = None
    parallel_tool_calls: bool | None = None
    json_mode: bool | None = None
    vision: bool | None = None


class DeploymentSpec(Strict):
    provider: str
    model: str = Field(description="The model name the upstream expects.")
    context_window: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    prices: Prices | None = None
    supports: Capabilities = Field(default_factory=Capabilities)
    timeout: float | None = Field(default=None, gt=0, description="Overrides the provider's per-attempt timeout.")
    params: dict[str, Any] = Field(default_factory=dict, description="Fields merged into every request body.")


class CooldownSpec(Strict):
    """Circuit breaker: within ``window_seconds``, at least ``min_requests`` attempts of which a share of at
    least ``failure_ratio`` (and never fewer than ``failures``) were upstream faults cool a deployment down.

    A ratio, not a bare count, so that a busy deployment with a few errors stays in service."""

    failures: int = Field(default=3, ge=1, description="Fewest upstream faults that can open the breaker.")
    failure_ratio: float = Field(default=0.5, gt=0, le=1, description="Share of attempts that were faults.")
    min_requests: int = Field(default=10, ge=1, description="Fewest attempts in the window for a ratio to count.")
    window_seconds: float = Field(default=30.0, gt=0)
    cooldown_seconds: float = Field(default=30.0, gt=0)


class RoutingSpec(Strict):
    """How the executor tries a plan: deadline, same-deployment retries, backoff, rate-limit waits, cooldowns."""

    deadline_seconds: float = Field(default=60.0, gt=0, description="Whole request, or until a stream's first byte.")
    retries: int = Field(default=1, ge=0, le=10, description="Extra tries of the same deployment on a transient error.")
    backoff_base: float = Field(default=0.1, ge=0)
    backoff_max: float = Field(default=2.0, ge=0)
    max_retry_after: float = Field(default=2.0, ge=0, description="Longest upstream retry-after worth waiting for.")
    cooldown: CooldownSpec = Field(default_factory=CooldownSpec)


class PublicModelSpec(Strict):
    deployments: list[str] = Field(min_length=1)
    description: str | None = None


class ConfigFile(Strict):
    """The whole file. Sections owned by later stages are validated by their own modules."""

    version: int = 1
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    deployments: dict[str, DeploymentSpec] = Field(default_factory=dict)
    models: dict[str, PublicModelSpec] = Field(default_factory=dict)
    rules: str | list[str] | None = Field(default=None, description="Rule files or folders, relative to this file.")
    policy_tests: str | list[str] | None = Field(default=None, description="Tool-policy test files or folders "
                                                 "(every *.policy-tests.yaml in one), relative to this file; "
                                                 "run by agent-router check.")
    roles: dict[str, RoleSpec] = Field(default_factory=dict)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    policy: dict[str, Any] = Field(default_factory=dict)
    limits: LimitsSection = Field(default_factory=lambda: LimitsSection())
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    mcp_servers: dict[str, McpServerSpec] = Field(default_factory=dict, description="Upstream MCP servers, served "
                                                  "to agents at /mcp/<name> and together at /mcp.")

    @field_validator("models", mode="before")
    @classmethod
    def _chain_shorthand(cls, value: Any) -> Any:
        """``fast: [a, b]`` is shorthand for ``fast: {deployments: [a, b]}``."""
        if isinstance(value, dict):
            return {k: _as_model_spec(v) for k, v in value.items()}
        return value


def _as_model_spec(value: Any) -> Any:
    if isinstance(value, str):
        return {"deployments": [value]}
    if isinstance(value, list):
        return {"deployments": value}
    return value


from router.config.limits_schema import LimitsSection  # noqa: E402  (imports Strict from here)
from router.config.mcp_schema import McpServerSpec  # noqa: E402
from router.config.roles_schema import AgentSpec, RoleSpec  # noqa: E402  (roles_schema imports Strict from here)

ConfigFile.model_rebuild()
