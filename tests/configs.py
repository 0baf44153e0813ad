"""Config texts for tests, pointing at a fake upstream.

Every config built here carries a role ``tester`` (all models, all tools) and an agent ``test-agent`` whose key
is ``test-key`` (given by hash, as operators do), because the harness clients send ``test-key`` by default.
"""

from __future__ import annotations

import hashlib
import re

TEST_KEY = "test-key"
TEST_KEY_HASH = "sha256:" + hashlib.sha256(TEST_KEY.encode()).hexdigest()
TESTER_ROLE = '  tester: {models: ["*"], tools: {allow: ["*"]}}'
TEST_AGENT = f'  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}]}}'


def _with_section_entry(extra: str, section: str, entry: str, present: bool) -> str:
    """Add ``entry`` under the top-level block ``section:`` of ``extra`` (or a new section at the end)."""
    if present:
        return extra
    header = re.search(rf"^{section}:[ \t]*(#.*)?$", extra, flags=re.MULTILINE)
    if header is not None:
        return extra[:header.end()] + "\n" + entry + extra[header.end():]
    if re.search(rf"^{section}:", extra, flags=re.MULTILINE):
        return extra  # a flow-style section written by the test itself: leave it as it is
    return f"{extra.rstrip()}\n{section}:\n{entry}\n"


def _section_has(extra: str, section: str, name: str) -> bool:
    """Whether the top-level block ``section:`` of ``extra`` already has the entry ``name``."""
    body = re.search(rf"^{section}:[^\n]*\n((?:[ \t]+[^\n]*\n?|\n)*)", extra, flags=re.MULTILINE)
    return body is not None and re.search(rf"^\s+{re.escape(name)}:", body.group(1), re.MULTILINE) is not None


def with_test_identity(extra: str) -> str:
    """``extra`` plus the ``tester`` role and the ``test-agent`` agent, unless the test already defines them."""
    extra = _with_section_entry(extra, "roles", TESTER_ROLE, _section_has(extra, "roles", "tester"))
    has_agent = TEST_KEY_HASH[7:] in extra or _section_has(extra, "agents", "test-agent")
    return _with_section_entry(extra, "agents", TEST_AGENT, has_agent)


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
{with_test_identity(extra)}
"""
