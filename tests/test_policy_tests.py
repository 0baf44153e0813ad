"""Tool-policy tests through ``agent-router check`` as a subprocess: cases that pass, cases that fail with file and
line, the gate (a rule change in the config fails a test that passed), agents and roles, the MCP plane with
qualified patterns and conditions, audit_only roles and malformed test files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(60)

CONFIG = """
providers:
  local: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: unused}
deployments:
  small: {provider: local, model: small}
models:
  fast: [small]
mcp_servers:
  github:
    url: http://127.0.0.1:9/mcp
    credentials:
      ops: {headers: {Authorization: "Bearer unused"}}
      auditor: {headers: {Authorization: "Bearer unused"}}
  ci-main: {url: "http://127.0.0.1:9/ci"}
  secrets: {url: "http://127.0.0.1:9/secrets", credentials: {auditor: {headers: {X-Key: unused}}}}
roles:
  ops:
    models: [fast]
    tools:
      allow: ["read_*", "delete_environment", "web_search", "mcp:docs"]
      deny: ["read_secrets"]
      conditions:
        - tool: delete_environment
          when: {path: environment, op: eq, value: production}
          reason: production environments are never deleted by agents
    mcp:
      servers: [github, "ci-*", secrets]
      tools:
        allow: ["github:*", "ci-*:run_*", "secrets:*"]
        deny: ["delete_*", "github:admin_*"]
        conditions:
          - tool: "github:create_issue"
            when: {path: repo, op: glob, value: "prod*"}
            reason: agents do not file issues on production repositories
  gatekeeper:
    models: [fast]
    tools: {allow: ["read_*"]}
    on_violation: block
  auditor:
    models: [fast]
    tools: {allow: ["read_*"]}
    on_violation: audit_only
    mcp:
      servers: [github]
      tools: {allow: ["github:get_*"]}
agents:
  ops-1: {role: ops}
  guard-1: {role: gatekeeper}
"""

PASSING = """\
- name: ops may read files
  agent: ops-1
  plane: chat
  tool: read_file
  arguments: {path: README.md}
  expect: allowed
  rule: "allow:read_*"
- name: deny wins over allow
  role: ops
  plane: messages
  tool: read_secrets
  expect: stripped
  rule: "deny:read_secrets"
- name: a staging environment may be deleted
  role: ops
  plane: responses
  tool: delete_environment
  arguments: {environment: staging}
  expect: allowed
- name: production is never deleted
  role: ops
  plane: chat
  tool: delete_environment
  arguments: '{"environment": "production"}'
  expect: stripped
  rule: "condition:delete_environment#0"
- name: a hosted MCP tool on the Responses API
  role: ops
  plane: responses
  tool: "mcp:docs"
  arguments: {server_label: docs, server_url: "https://docs.internal/mcp"}
  expect: allowed
- name: a block role blocks
  agent: guard-1
  plane: chat
  tool: write_file
  expect: blocked
  rule: default-deny
"""


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of ``path`` that holds ``needle`` (the first one)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("AGENT_ROUTER")}
    return subprocess.run([sys.executable, "-m", "router", "check", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env={**clean, "PYTHONPATH": str(REPO)}, cwd=REPO)


def write(tmp_path: Path, tests: str, config: str = CONFIG) -> tuple[Path, Path]:
    path = tmp_path / "router.yaml"
    path.write_text(config)
    beside = tmp_path / "router.policy-tests.yaml"
    beside.write_text(tests)
    return path, beside


def test_passing_cases_are_counted(tmp_path: Path) -> None:
    config, _ = write(tmp_path, PASSING)
    result = run_check(config)
    assert result.returncode == 0, result.stderr
    assert "6 policy tests passed in 1 files" in result.stdout


def test_a_failing_case_names_file_line_expected_and_decided(tmp_path: Path) -> None:
    config, tests = write(tmp_path, PASSING + """\
- name: ops may write files
  role: ops
  plane: chat
  tool: write_file
  expect: allowed
- role: ops
  plane: chat
  tool: read_file
  expect: allowed
  rule: "allow:read_file"
""")
    result = run_check(config)
    assert result.returncode == 1
    assert "policy check failed (6 policy tests passed in 1 files, 2 problems)" in result.stderr
    line = line_of(tests, "ops may write files")
    assert (f"{tests}:{line}: policy test 'ops may write files': expected allowed, got stripped "
            "(rule 'default-deny': tool 'write_file' is not in the allow list of role 'ops')") in result.stderr
    assert (f"{tests}:{line + 5}: policy test #7: expected rule 'allow:read_file', got allowed "
            "(rule 'allow:read_*'") in result.stderr


def test_a_rule_change_in_the_config_fails_the_check(tmp_path: Path) -> None:
    """The gate: the same tests, a policy change that widens what ops may do, and check fails."""
    config, tests = write(tmp_path, PASSING)
    assert run_check(config).returncode == 0
    config.write_text(CONFIG.replace('deny: ["read_secrets"]', "deny: []"))
    result = run_check(config)
    assert result.returncode == 1
    assert (f"{tests}:{line_of(tests, 'deny wins')}: policy test 'deny wins over allow': expected stripped, "
            "got allowed (rule 'allow:read_*'") in result.stderr
    config.write_text(CONFIG.replace("op: eq, value: production", "op: eq, value: prod"))
    result = run_check(config)
    assert result.returncode == 1
    assert (f"{tests}:{line_of(tests, 'production is never')}: policy test 'production is never deleted': "
            "expected stripped, got allowed") in result.stderr


def test_agent_or_role_and_unknown_ones(tmp_path: Path) -> None:
    config, tests = write(tmp_path, """\
- {name: the agent's role decides, agent: guard-1, plane: chat, tool: read_file, expect: allowed}
- {name: the same tool for the agent's role by name, role: gatekeeper, plane: chat, tool: run, expect: blocked}
- {name: ghost agent, agent: ghost, plane: chat, tool: read_file, expect: allowed}
- {name: ghost role, role: ghost, plane: chat, tool: read_file, expect: allowed}
- {name: both, agent: guard-1, role: ops, plane: chat, tool: read_file, expect: allowed}
- {name: neither, plane: chat, tool: read_file, expect: allowed}
""")
    result = run_check(config)
    assert result.returncode == 1
    assert "2 policy tests passed in 1 files, 4 problems" in result.stderr
    assert f"{tests}:3: policy test 'ghost agent': agent 'ghost' is not in the config" in result.stderr
    assert f"{tests}:4: policy test 'ghost role': role 'ghost' is not in the config" in result.stderr
    assert f"{tests}:5: 4: give exactly one of agent and role" in result.stderr
    assert f"{tests}:6: 5: give exactly one of agent and role" in result.stderr


def test_mcp_plane_qualified_patterns_conditions_and_credentials(tmp_path: Path) -> None:
    config, tests = write(tmp_path, """\
- {role: ops, plane: mcp, server: github, tool: get_issue, expect: allowed, rule: "allow:github:*"}
- {role: ops, plane: mcp, server: ci-main, tool: run_pipeline, expect: allowed, rule: "allow:ci-*:run_*"}
- {role: ops, plane: mcp, server: ci-main, tool: get_log, expect: refused, rule: default-deny}
- {role: ops, plane: mcp, server: ci-main, tool: delete_run, expect: refused, rule: "deny:delete_*"}
- {role: ops, plane: mcp, server: github, tool: admin_settings, expect: refused, rule: "deny:github:admin_*"}
- {role: ops, plane: mcp, server: github, tool: create_issue, arguments: {repo: docs}, expect: allowed}
- {role: ops, plane: mcp, server: github, tool: create_issue, arguments: {repo: prod-api}, expect: refused,
   rule: "condition:github:create_issue#0"}
- {name: a missing argument fails closed, role: ops, plane: mcp, server: github, tool: create_issue,
   expect: refused, rule: "condition:github:create_issue#0"}
- {name: arguments that are not JSON, role: ops, plane: mcp, server: github, tool: create_issue,
   arguments: "{repo", expect: refused, rule: invalid-arguments}
- {name: no credential for the role, role: ops, plane: mcp, server: secrets, tool: read, expect: refused,
   rule: no-credential}
- {name: wrong expectation, role: ops, plane: mcp, server: github, tool: delete_repo, expect: allowed}
- {name: no such server, role: ops, plane: mcp, server: gitlab, tool: get_issue, expect: refused}
""")
    result = run_check(config)
    assert result.returncode == 1
    assert "10 policy tests passed in 1 files, 2 problems" in result.stderr
    assert (f"{tests}:15: policy test 'wrong expectation': expected allowed, got refused (rule 'deny:delete_*': "
            "tool 'github:delete_repo' matches deny pattern 'delete_*')") in result.stderr
    assert f"{tests}:16: policy test 'no such server': MCP server 'gitlab' is not in the config" in result.stderr


def test_audit_only_roles_allow_and_name_the_rule_that_would_deny(tmp_path: Path) -> None:
    config, tests = write(tmp_path, """\
- {role: auditor, plane: chat, tool: write_file, expect: allowed, rule: default-deny}
- {role: auditor, plane: mcp, server: github, tool: create_issue, expect: allowed, rule: default-deny}
- {name: an unreachable server is refused even in audit_only, role: auditor, plane: mcp, server: ci-main,
   tool: run_pipeline, expect: refused, rule: server-not-allowed}
- {name: not stripped, role: auditor, plane: chat, tool: write_file, expect: stripped}
- {name: not refused, role: auditor, plane: mcp, server: github, tool: create_issue, expect: refused}
""")
    result = run_check(config)
    assert result.returncode == 1
    assert "3 policy tests passed in 1 files, 2 problems" in result.stderr
    assert (f"{tests}:5: policy test 'not stripped': expected stripped, got allowed (audit_only: would strip) "
            "(rule 'default-deny'") in result.stderr
    assert (f"{tests}:6: policy test 'not refused': expected refused, got allowed (audit_only: would refuse) "
            "(rule 'default-deny'") in result.stderr


def test_malformed_test_files_are_problems_with_lines(tmp_path: Path) -> None:
    config, tests = write(tmp_path, """\
- name: unknown field
  role: ops
  plane: chat
  tool: read_file
  expect: allowed
  extra: 1
- {name: refused is the mcp plane's, role: ops, plane: chat, tool: read_file, expect: refused}
- {name: stripped is not the mcp plane's, role: ops, plane: mcp, server: github, tool: x, expect: stripped}
- {name: mcp needs a server, role: ops, plane: mcp, tool: get_issue, expect: allowed}
- {name: chat has no server, role: ops, plane: chat, server: github, tool: read_file, expect: allowed}
- {name: a plane that is none, role: ops, plane: grpc, tool: read_file, expect: allowed}
- {name: approvals, role: ops, plane: mcp, server: github, tool: get_issue, expect: approval_required}
""")
    result = run_check(config)
    assert result.returncode == 1
    err = result.stderr
    assert f"{tests}:6: 0.extra: unknown field" in err
    assert f"{tests}:7: 1: on the chat plane a call is allowed, stripped, blocked, approval_required, not refused" \
        in err
    assert f"{tests}:8: 2: on the mcp plane a call is allowed, refused, approval_required, not stripped" in err
    assert f"{tests}:9: 3: an mcp case names its server" in err
    assert f"{tests}:10: 4: server is for the mcp plane only (this case is on chat)" in err
    assert f"{tests}:11: 5.plane: Input should be 'chat', 'messages', 'responses' or 'mcp'" in err
    assert (f"{tests}:12: policy test 'approvals': expected approval_required, but approvals are not supported yet"
            in err)
    tests.write_text("tests: {not: a list}\n")
    result = run_check(config)
    assert result.returncode == 1
    assert f"{tests}:1: a policy test file is a YAML list of test cases (or a mapping with 'tests:')" in result.stderr
    tests.write_text("- [unclosed\n")
    result = run_check(config)
    assert result.returncode == 1
    assert str(tests) in result.stderr


def test_policy_tests_key_names_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "10-ops.policy-tests.yaml").write_text(PASSING)
    (folder / "20-audit.policy-tests.yaml").write_text(
        "- {role: auditor, plane: chat, tool: write_file, expect: allowed}\n")
    (folder / "notes.yaml").write_text("not: a test file\n")
    config, _ = write(tmp_path, "- {role: ops, plane: chat, tool: read_file, expect: blocked}\n",
                      CONFIG + "policy_tests: [policy]\n")
    result = run_check(config)
    assert result.returncode == 0, result.stderr  # the file beside the config is not read when the key is given
    assert "7 policy tests passed in 2 files" in result.stdout
    config.write_text(CONFIG + "policy_tests:\n  - policy\n  - missing.policy-tests.yaml\n")
    result = run_check(config)
    assert result.returncode == 1
    assert (f"{config}:{line_of(config, '- missing')}: policy_tests: 'missing.policy-tests.yaml' is neither a file "
            "nor a folder") in result.stderr


def test_the_example_config_passes_its_policy_tests() -> None:
    result = run_check(REPO / "examples" / "config.yaml")
    assert result.returncode == 0, result.stderr
    assert "8 policy tests passed in 1 files" in result.stdout
