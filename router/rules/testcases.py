"""Rule tests kept beside the rules (``*.tests.yaml``), run by ``agent-router check``.

    - name: a coder's long prompt goes to the long-context pool
      agent: coder-1                      # optional; role is taken from the agent when not given
      role: coder
      headers: {team: search}             # x-agent-router-team
      request: {model: gpt-4o, stream: true, tools: [...], messages: [...]}
      prompt_tokens: 40000                # optional: use this instead of counting the messages
      stats: {big-a: {latency_ms: 300, in_flight: 2}}   # optional facts for lowest_latency / least_busy
      expect: {rule: long-context, deployment: big-a}

``expect`` may give ``rule``, ``deployment`` (the first to try; a list means any of them),
``deployments`` (the whole chain) or ``error`` (an error code such as ``model_not_found``). Splits that are
not sticky draw from a fixed seed in tests, so a test run is repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from router.config.case_files import run_case_file
from router.config.errors import ConfigProblem
from router.config.schema import Strict
from router.config.snapshot import Snapshot
from router.deployment_stats import DeploymentStats
from router.errors import RouterError
from router.rules.decide import decide
from router.rules.explain import request_context

DEFAULT_MESSAGES = [{"role": "user", "content": "hello"}]
TEST_SEED = 20240101


class StatFacts(Strict):
    latency_ms: float | None = Field(default=None, ge=0)
    in_flight: int = Field(default=0, ge=0)


class Expectation(Strict):
    rule: str | None = None
    deployment: str | list[str] | None = None
    deployments: list[str] | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Expectation:
        if not self.model_fields_set:
            raise ValueError("expect at least one of: rule, deployment, deployments, error")
        return self


class RuleTestCase(Strict):
    name: str | None = None
    agent: str | None = None
    role: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    request: dict[str, Any]
    prompt_tokens: int | None = Field(default=None, ge=0)
    stats: dict[str, StatFacts] = Field(default_factory=dict)
    expect: Expectation

    @model_validator(mode="after")
    def _has_model(self) -> RuleTestCase:
        if not isinstance(self.request.get("model"), str):
            raise ValueError("request needs a model")
        return self


@dataclass(frozen=True)
class RuleTestReport:
    passed: int
    problems: list[ConfigProblem]


def _stats(facts: dict[str, StatFacts]) -> DeploymentStats:
    stats = DeploymentStats()
    for name, fact in facts.items():
        stat = stats.get(name)
        stat.latency_ms, stat.in_flight = fact.latency_ms, fact.in_flight
    return stats


def _mismatches(case: RuleTestCase, snapshot: Snapshot) -> list[str]:
    payload = {"messages": DEFAULT_MESSAGES, **case.request}
    ctx = request_context(snapshot, payload, agent=case.agent, role=case.role, headers=case.headers)
    if case.prompt_tokens is not None:
        ctx.prompt_estimate = case.prompt_tokens
    expect = case.expect
    try:
        plan = decide(ctx, _stats(case.stats), rand=random.Random(TEST_SEED).random).plan
    except RouterError as exc:
        if expect.error is not None and expect.error in (exc.code, type(exc).__name__):
            return []
        return [f"expected {_expected(expect)}, got error {exc.code}: {exc.message}"]
    found = []
    if expect.error is not None:
        found.append(f"expected error {expect.error}, got rule {plan.rule!r}")
    if expect.rule is not None and plan.rule != expect.rule:
        found.append(f"expected rule {expect.rule!r}, got {plan.rule!r}")
    first = plan.deployments[0] if plan.deployments else None
    allowed = [expect.deployment] if isinstance(expect.deployment, str) else expect.deployment
    if allowed is not None and first not in allowed:
        found.append(f"expected first deployment {' or '.join(map(repr, allowed))}, got {first!r} "
                     f"(rule {plan.rule!r})")
    if expect.deployments is not None and list(plan.deployments) != expect.deployments:
        found.append(f"expected chain {expect.deployments}, got {list(plan.deployments)}")
    return found


def _expected(expect: Expectation) -> str:
    return ", ".join(f"{k} {getattr(expect, k)!r}" for k in sorted(expect.model_fields_set)) or "a plan"


def run_test_file(path: Path, snapshot: Snapshot) -> RuleTestReport:
    """Every case of one file against ``snapshot``; each failure or malformed case is a problem at its line."""
    passed, problems = run_case_file(path, snapshot, RuleTestCase, "rule test", "test", _mismatches)
    return RuleTestReport(passed, problems)
