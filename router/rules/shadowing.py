"""Find rules that can never match because an earlier rule already takes every request they would.

Rule A shadows a later rule B when A has no condition, or when every test of A is implied by some test of B
(A is the same or more general): same fact with patterns that cover all of B's (a glob covers the exact names
it matches), the same flag, a token range that contains B's. ``any`` and ``not`` are compared as wholes.
This finds the common mistakes, not every possible one (a sound and complete check is not worth its cost).
"""

from __future__ import annotations

from collections.abc import Sequence

from router.config.errors import ConfigProblem
from router.rules.compile import CompiledRule
from router.rules.conditions import AllOf, Condition, PatternTest, TokenRangeTest


def _tests(condition: Condition) -> list[Condition]:
    """The condition as a list of and-ed tests (nested ``all`` flattened)."""
    if isinstance(condition, AllOf):
        return [leaf for child in condition.children for leaf in _tests(child)]
    return [condition]


def _implies(specific: Condition, general: Condition) -> bool:
    """True when every request passing ``specific`` also passes ``general``."""
    if specific == general:
        return True
    if isinstance(specific, PatternTest) and isinstance(general, PatternTest):
        if (specific.fact, specific.key) != (general.fact, general.key):
            return False
        return all(
            any(g.text == s.text or (s.is_literal and g.matches(s.text)) for g in general.patterns)
            for s in specific.patterns
        )
    if isinstance(specific, TokenRangeTest) and isinstance(general, TokenRangeTest):
        low_ok = general.min is None or (specific.min is not None and specific.min >= general.min)
        high_ok = general.max is None or (specific.max is not None and specific.max <= general.max)
        return low_ok and high_ok
    return False


def shadows(earlier: CompiledRule, later: CompiledRule) -> bool:
    if earlier.condition is None:
        return True
    if later.condition is None:
        return False
    later_tests = _tests(later.condition)
    return all(any(_implies(test, general) for test in later_tests) for general in _tests(earlier.condition))


def shadowed_rules(rules: Sequence[CompiledRule]) -> list[ConfigProblem]:
    problems = []
    for j, later in enumerate(rules):
        for earlier in rules[:j]:
            if shadows(earlier, later):
                why = "matches every request" if earlier.condition is None else "is as general or more"
                problems.append(ConfigProblem(later.file, later.line,
                                              f"rule {later.name!r} can never match: rule {earlier.name!r} at "
                                              f"{earlier.where} comes first and {why}"))
                break
    return problems
