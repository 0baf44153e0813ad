"""The embedded default config, with real providers added when their API keys are in the environment."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

DEFAULT_CONFIG_NAME = "<built-in default>"


def default_config_text() -> str:
    return resources.files("router.defaults").joinpath("config.yaml").read_text(encoding="utf-8")


def add_env_providers(data: dict[str, Any]) -> dict[str, Any]:
    """Add OpenAI and Anthropic deployments when their keys are set, so a first run can reach them."""
    providers = data.setdefault("providers", {})
    deployments = data.setdefault("deployments", {})
    models = data.setdefault("models", {})
    if os.environ.get("OPENAI_API_KEY"):
        base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        providers["openai"] = {"type": "openai", "base_url": base_url, "api_key": os.environ["OPENAI_API_KEY"]}
        for model in ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"):
            deployments[f"openai-{model}"] = {"provider": "openai", "model": model}
            models[model] = {"deployments": [f"openai-{model}"]}
    if os.environ.get("ANTHROPIC_API_KEY"):
        providers["anthropic"] = {"type": "litellm", "api_key": os.environ["ANTHROPIC_API_KEY"]}
        for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
            deployments[f"anthropic-{model}"] = {"provider": "anthropic", "model": f"anthropic/{model}"}
            models[model] = {"deployments": [f"anthropic-{model}"]}
    return data
