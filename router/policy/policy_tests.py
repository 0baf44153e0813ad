"""Tool-policy tests (``*.policy-tests.yaml``): what a role's policy must decide, checked by ``agent-router check``.

    - name: coders may read files
      role: coder                   # or agent: coder-1 (its role is used)
      plane: chat                   # chat | messages | responses | mcp
      tool: read_file               # on mcp also server: github
      arguments: {path: README.md}  # an object, or JSON text as a model would send it; default {}
      expect: allowed               # allowed | stripped | blocked | refused | approval_required
      rule: "allow:read_*"          # optional: the rule that decided

The outcome is what an agent would see, so it follows the role's mode: on the model planes a denied call is
``stripped`` (strip) or ``blocked`` (block), and ``allowed`` under audit_only (the rule still names what would
have denied it); on the tool plane it is ``refused``, and ``allowed`` under audit_only. The decision is made by
the planes' own functions, so a test that passes here passes on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import model_validator

from router.config.case_files import run_case_file
from router.config.errors import ConfigProblem
from router.config.schema import Strict
from router.config.snapshot import Snapshot
from router.errors import PolicyViolation
from router.mcp.policy import mcp_policy_for
from router.mcp.tool_call import decide_call
from router.policy.decide import decide, policy_for

MODEL_PLANES = ("chat", "messages", "responses")
MODEL_OUTCOMES = ("allowed", "stripped", "blocked", "approval_required")
MCP_OUTCOMES = ("allowed", "refused", "approval_required")

Outcome = Literal["allowed", "stripped", "blocked", "refused", "approval_required"]


class PolicyTestCase(Strict):
    name: str | None = None
    agent: str | None = None
    role: str | None = None
    plane: Literal["chat", "messages", "responses", "mcp"]
    server: str | None = None
    tool: str
    arguments: dict[str, Any] | str | None = None
    expect: Outcome
    rule: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PolicyTestCase:
        if (self.agent is None) == (self.role is None):
            raise ValueError("give exactly one of agent and role")
        if self.plane == "mcp":
            if self.server is None:
                raise ValueError("an mcp case names its server")
            if self.expect not in MCP_OUTCOMES:
                raise ValueError(f"on the mcp plane a call is {', '.join(MCP_OUTCOMES)}, not {self.expect}")
        else:
            if self.server is not None:
                raise ValueError(f"server is for the mcp plane only (this case is on {self.plane})")
            if self.expect not in MODEL_OUTCOMES:
                raise ValueError(f"on the {self.plane} plane a call is {', '.join(MODEL_OUTCOMES)}, not "
                                 f"{self.expect} (refused is the mcp plane's)")
        return self

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return orjson.dumps(self.arguments if self.arguments is not None else {}).decode()


@dataclass(frozen=True)
class PolicyOutcome:
    """What the policy decided for one case, as an agent would see it."""

    outcome: str
    rule: str
    reason: str
    note: str = ""

    def describe(self) -> str:
        return f"{self.outcome}{self.note} (rule {self.rule!r}: {self.reason})"


@dataclass(frozen=True)
class PolicyTestReport:
    passed: int
    problems: list[ConfigProblem]


def _role_of(case: PolicyTestCase, snapshot: Snapshot) -> str:
    """The case's role; ValueError when the agent or role is not in the config (a test of nothing)."""
    if case.agent is not None:
        agent = snapshot.agents.get(case.agent)
        if agent is None:
            raise ValueError(f"agent {case.agent!r} is not in the config")
        role: str = agent.role
        return role
    assert case.role is not None
    if case.role not in snapshot.roles:
        raise ValueError(f"role {case.role!r} is not in the config")
    return case.role


def decide_case(case: PolicyTestCase, snapshot: Snapshot) -> PolicyOutcome:
    """The planes' own decision for ``case``; ValueError when the case names something the config lacks."""
    role = _role_of(case, snapshot)
    arguments = case.arguments_json()
    if case.plane == "mcp":
        return _decide_mcp(case, snapshot, role, arguments)
    try:
        policy = policy_for(snapshot, role)
    except PolicyViolation as exc:
        return PolicyOutcome("blocked", "policy-unavailable", exc.message)
    decision = decide(policy, case.tool, arguments)
    if decision.allowed:
        return PolicyOutcome("allowed", decision.rule, decision.reason)
    if policy.mode == "audit_only":
        return PolicyOutcome("allowed", decision.rule, decision.reason, " (audit_only: would strip)")
    return PolicyOutcome("stripped" if policy.mode == "strip" else "blocked", decision.rule, decision.reason)


def _decide_mcp(case: PolicyTestCase, snapshot: Snapshot, role: str, arguments: str) -> PolicyOutcome:
    assert case.server is not None
    spec = snapshot.spec.mcp_servers.get(case.server)
    if spec is None:
        raise ValueError(f"MCP server {case.server!r} is not in the config")
    try:
        policy = mcp_policy_for(snapshot, role)
    except PolicyViolation as exc:
        return PolicyOutcome("refused", "policy-unavailable", exc.message)
    if policy.may_reach(case.server) and spec.credential_for(role) is None:
        return PolicyOutcome("refused", "no-credential", f"MCP server '{case.server}' has no credential for role "
                                                         f"'{role}', so the role cannot use it")
    verdict = decide_call(policy, case.server, case.tool, True, arguments)
    rule = verdict.rule or ""
    if verdict.decision == "allowed":
        return PolicyOutcome("allowed", rule, verdict.reason)
    if verdict.decision == "would_deny":
        return PolicyOutcome("allowed", rule, verdict.reason, " (audit_only: would refuse)")
    return PolicyOutcome("refused", rule, verdict.reason)


def _mismatches(case: PolicyTestCase, snapshot: Snapshot) -> list[str]:
    if case.expect == "approval_required":
        return ["expected approval_required, but approvals are not supported yet"]
    try:
        got = decide_case(case, snapshot)
    except ValueError as exc:
        return [str(exc)]
    found = []
    if got.outcome != case.expect:
        found.append(f"expected {case.expect}, got {got.describe()}")
    elif case.rule is not None and got.rule != case.rule:
        found.append(f"expected rule {case.rule!r}, got {got.describe()}")
    return found


def run_policy_test_file(path: Path, snapshot: Snapshot) -> PolicyTestReport:
    """Every case of one file against ``snapshot``; each failure or malformed case is a problem at its line."""
    passed, problems = run_case_file(path, snapshot, PolicyTestCase, "policy test", "policy test", _mismatches)
    return PolicyTestReport(passed, problems)
