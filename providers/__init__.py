"""Provider adapters: each speaks one wire format and nothing else (no policy, routing or accounting).

``build_provider`` imports an adapter only when a provider of its type is configured, so litellm is
never imported by a router that does not use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.base import ChatCall, Completion, Provider

if TYPE_CHECKING:
    from router.config.schema import ProviderSpec

__all__ = ["ChatCall", "Completion", "Provider", "build_provider"]


def build_provider(name: str, spec: ProviderSpec) -> Provider:
    if spec.type == "openai":
        from providers.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider(name, spec)
    if spec.type == "mock":
        from providers.mock import MockProvider

        return MockProvider(name, spec)
    if spec.type == "anthropic":
        from providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, spec)
    if spec.type == "litellm":
        from providers.litellm_bridge import LiteLLMProvider

        return LiteLLMProvider(name, spec)
    raise ValueError(f"unknown provider type {spec.type!r}")
