"""Config and readers shared by the Messages tests: an Anthropic-format deployment and an OpenAI-format one on the
same fake upstream, so one test can route, fall back and translate between the two wires."""

from __future__ import annotations

from typing import Any

from tests.configs import with_test_identity
from tests.harness import RouterServer, wait_until
from tests.ledger_helpers import usage_rows

USER = [{"role": "user", "content": "hello"}]


def messages_config(root_url: str, extra: str = "", *, claude: str = "[claude]") -> str:
    """``claude`` (Anthropic wire), ``gpt`` (OpenAI wire), ``mixed`` (Anthropic first, OpenAI as fallback)."""
    return f"""
providers:
  anthropic-up:
    type: anthropic
    base_url: {root_url}
    api_key: sk-ant-upstream-secret
    timeout: 5
  openai-up:
    type: openai
    base_url: {root_url}/v1
    api_key: sk-openai-upstream-secret
    timeout: 5
deployments:
  claude: {{provider: anthropic-up, model: up-claude, prices: {{input_per_million: 3, output_per_million: 15,
           cached_input_per_million: 0.3, cache_write_per_million: 3.75}}}}
  claude-b: {{provider: anthropic-up, model: up-claude-b}}
  gpt: {{provider: openai-up, model: up-gpt}}
models:
  sonnet: {claude}
  gpt: [gpt]
  mixed: [claude, gpt]
  pair: [claude, claude-b]
{with_test_identity(extra)}
"""


def request_rows(router: RouterServer, count: int = 1) -> list[dict[str, Any]]:
    """The ledger's request rows once ``count`` of them are written."""
    url = router.settings.database_url
    assert wait_until(lambda: len(usage_rows(url, "request")) >= count, timeout=10)
    return usage_rows(url, "request")
