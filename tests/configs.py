"""Config texts for tests, pointing at a fake upstream."""

from __future__ import annotations


def openai_config(base_url: str, extra: str = "", *, chain: str = "[primary]", timeout: float = 5) -> str:
    """One OpenAI-compatible provider with two deployments on the same fake upstream."""
    return f"""
providers:
  fake:
    type: openai
    base_url: {base_url}
    api_key: sk-upstream-secret
    timeout: {timeout}
deployments:
  primary: {{provider: fake, model: up-primary, context_window: 8192}}
  secondary: {{provider: fake, model: up-secondary, context_window: 128000}}
models:
  fast: {chain}
  both: [primary, secondary]
{extra}
"""
