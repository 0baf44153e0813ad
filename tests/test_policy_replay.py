"""``agent-router policy replay`` (issue 15, item 5): the decisions recorded under one config, decided again under
another, and exactly what would change, on both planes; no change exits 0, any change exits 1 (a CI gate)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest

from tests.configs import openai_config
from tests.fakes.behaviours import ToolCalls
from tests.fakes.mcp_fake import FakeMcpServer
from tests.harness import write_config
from tests.mcp_helpers import agents, mcp_session

pytestmark = pytest.mark.timeout(120)

ROLES = """
roles:
  ops:
    models: ["*"]
    tools:
      allow: ["search", "deploy", "read_file"]
    mcp:
      servers: [github]
      tools: {allow: ["github:get_issue", "github:create_issue"]}
"""
CHANGED = """
roles:
  ops:
    models: ["*"]
    tools:
      allow: ["search", "deploy", "delete_environment", "read_file"]
      deny: ["read_*"]
      conditions: [{tool: deploy, when: {path: environment, op: eq, value: production}}]
    mcp:
      servers: [github]
      tools:
        allow: ["github:get_issue", "github:create_issue"]
        conditions: [{tool: "github:create_issue", when: {path: repo, op: glob, value: "prod*"}}]
"""


def _config(roles: str, upstream_url: str, mcp_url: str) -> str:
    return openai_config(upstream_url, roles + agents(("ops-1", "ops"))) + \
        f'mcp_servers:\n  github: {{url: "{mcp_url}", timeout: 5, record_arguments: true}}\n'


def _tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def _replay(config: Path, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", "policy", "replay", "--config", str(config),
                           "--database-url", database, "--format", "json"], capture_output=True, text=True,
                          timeout=60)


def test_replay_shows_what_a_new_config_would_change(upstream: Any, start_router: Any, tmp_path: Path) -> None:
    with FakeMcpServer.start_http(tmp_path, "github") as github:
        router = start_router(_config(ROLES, upstream.openai_base_url, github.url), ledger_flush_interval=0.05)
        upstream.queue("up-primary", ToolCalls(calls=[("search", "{}"), ("read_file", "{}")]))
        openai.OpenAI(base_url=f"{router.url}/v1", api_key="ops-1-key", max_retries=0).chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "go"}],
            tools=[_tool(n) for n in ("search", "read_file", "deploy", "delete_environment")])

        async def calls() -> None:
            async with mcp_session(f"{router.url}/mcp/github", "ops-1-key") as session:
                await session.call_tool("create_issue", {"repo": "production", "title": "t"})
                await session.call_tool("create_issue", {"repo": "sandbox", "title": "t"})
                await session.call_tool("get_issue", {"number": 1})

        anyio.run(calls)
        time.sleep(0.5)
        database = router.settings.database_url
        (tmp_path / "same").mkdir()
        (tmp_path / "new").mkdir()
        same = write_config(_config(ROLES, upstream.openai_base_url, github.url), str(tmp_path / "same"))
        new = write_config(_config(CHANGED, upstream.openai_base_url, github.url), str(tmp_path / "new"))
        unchanged, changed = _replay(same, database), _replay(new, database)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert json.loads(unchanged.stdout)["changed"] == 0
    assert changed.returncode == 1, changed.stderr
    report = json.loads(changed.stdout)
    found = {(c["plane"], c["tool"], c["before"], c["after"]): c for c in report["changes"]}
    assert ("model", "read_file", "through", "refused") in found  # the request and the answer: 2 decisions
    assert found[("model", "read_file", "through", "refused")]["decisions"] == 2
    assert found[("model", "read_file", "through", "refused")]["new_rule"] == "deny:read_*"
    assert ("model", "delete_environment", "refused", "through") in found
    assert ("model", "deploy", "through", "needs arguments") in found  # the model plane records no arguments
    assert ("mcp", "github:create_issue", "through", "refused") in found  # production: decided on its arguments
    assert found[("mcp", "github:create_issue", "through", "refused")]["decisions"] == 1
    assert not [c for c in report["changes"] if c["tool"] in ("search", "github:get_issue")]
    table = subprocess.run([sys.executable, "-m", "router", "policy", "replay", "--config", str(new),
                            "--database-url", database], capture_output=True, text=True, timeout=60)
    assert table.returncode == 1 and "would change" in table.stdout and "deny:read_*" in table.stdout
