"""What ``agent-router check`` adds for rules: shadowed rules and the rule tests kept beside the rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from router.config.errors import ConfigProblem
from router.config.snapshot import Snapshot
from router.rules.compile import find_rule_sources
from router.rules.shadowing import shadowed_rules
from router.rules.testcases import run_test_file


@dataclass(frozen=True)
class RuleCheck:
    rules: int
    test_files: int
    tests_passed: int
    problems: list[ConfigProblem]

    @property
    def summary(self) -> str:
        if not self.rules and not self.test_files:
            return "no routing rules"
        return (f"{self.rules} rules, {self.tests_passed} rule tests passed in {self.test_files} files, "
                f"{len(self.problems)} problems")


def check_rules(snapshot: Snapshot) -> RuleCheck:
    """Shadowed rules and failing rule tests, each with file and line. (Load errors never get this far.)"""
    problems = shadowed_rules(snapshot.rules)
    sources = find_rule_sources(snapshot.spec.rules, Path(snapshot.base_dir), None, problems)
    passed = 0
    for path in sources.test_files:
        report = run_test_file(path, snapshot)
        passed += report.passed
        problems.extend(report.problems)
    return RuleCheck(len(snapshot.rules), len(sources.test_files), passed, problems)
