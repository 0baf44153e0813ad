"""Config shared by the Responses tests: deployments of every kind on one fake upstream, so one test can pass
through, translate and fall back between wires."""

from __future__ import annotations

from tests.configs import with_test_identity


def responses_config(root_url: str, extra: str = "") -> str:
    """Models: ``native`` (an upstream serving /responses), ``chatonly`` (chat only: translated), ``claude``
    (Anthropic: translated through chat), ``crossing`` (native first, chat-only fallback), ``pair`` (two native
    deployments), ``responses-only`` (an upstream with /responses only, for chat and Messages callers)."""
    return f"""
providers:
  native-up:
    type: openai
    base_url: {root_url}/v1
    api_key: sk-native-upstream-secret
    apis: [chat, responses]
    timeout: 5
  chat-up:
    type: openai
    base_url: {root_url}/v1
    api_key: sk-chat-upstream-secret
    timeout: 5
  only-responses-up:
    type: openai
    base_url: {root_url}/v1
    api_key: sk-only-upstream-secret
    apis: [responses]
    timeout: 5
  anthropic-up:
    type: anthropic
    base_url: {root_url}
    api_key: sk-ant-upstream-secret
    timeout: 5
deployments:
  native: {{provider: native-up, model: up-native, prices: {{input_per_million: 2, output_per_million: 8}}}}
  native-b: {{provider: native-up, model: up-native-b}}
  chatdep: {{provider: chat-up, model: up-chat}}
  only: {{provider: only-responses-up, model: up-only}}
  claude: {{provider: anthropic-up, model: up-claude}}
models:
  native: [native]
  chatonly: [chatdep]
  claude: [claude]
  crossing: [native, chatdep]
  pair: [native, native-b]
  responses-only: [only]
{with_test_identity(extra)}
"""
