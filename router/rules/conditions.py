"""Compiled rule conditions: a small tree of tests over :class:`RequestFacts`, evaluated lazily.

``all`` and ``any`` short-circuit, so an expensive fact (the prompt's token count) is computed only when a
condition actually reaches it, and a token range is first tried on cheap bounds of the count (the routing
hot path; an explained decision always shows the count). Each test can explain itself for ``/v1/route/explain``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from router.rules.facts import RequestFacts, header_name
from router.rules.schema import MatchSpec, Patterns

Trace = list[dict[str, Any]]
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    regex: re.Pattern[str] | None
    """None for an exact name (compared as a string, the fast path)."""

    def matches(self, value: str) -> bool:
        if self.regex is None:
            return value == self.text
        return self.regex.fullmatch(value) is not None

    @property
    def is_literal(self) -> bool:
        return self.regex is None


def compile_pattern(text: str) -> Pattern:
    """A glob, an exact name, or ``re:<regex>``; raise ValueError for a pattern that cannot be right."""
    if text.startswith("re:"):
        try:
            return Pattern(text, re.compile(text[3:]))
        except re.error as exc:
            raise ValueError(f"bad regular expression {text[3:]!r}: {exc}") from None
    if not GLOB_CHARS & set(text):
        return Pattern(text, None)
    if text.count("[") != text.count("]"):
        raise ValueError(f"bad glob {text!r}: unbalanced [ ]")
    return Pattern(text, re.compile(fnmatch.translate(text)))


def as_list(patterns: Patterns) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


class Condition:
    """One node of the tree. ``trace`` (when given) receives a readable record of what was tested."""

    def test(self, facts: RequestFacts, trace: Trace | None = None) -> bool:
        raise NotImplementedError

    @property
    def needs_tokens(self) -> bool:
        return False

    def summary(self) -> str:
        """The condition as a short line of text, for the plan's reason (computed once, at load)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class PatternTest(Condition):
    fact: str
    """model, agent, role, user, header or metadata."""
    patterns: tuple[Pattern, ...]
    key: str | None = None

    def value(self, facts: RequestFacts) -> str | None:
        if self.fact == "header":
            return facts.header(self.key or "")
        if self.fact == "metadata":
            return facts.metadata(self.key or "")
        value: str | None = getattr(facts, self.fact)
        return value

    def test(self, facts: RequestFacts, trace: Trace | None = None) -> bool:
        value = self.value(facts)
        ok = value is not None and any(p.matches(value) for p in self.patterns)
        if trace is not None:
            label = self.fact if self.key is None else f"{self.fact} {self.key}"
            trace.append({"test": label, "expected": [p.text for p in self.patterns], "actual": value,
                          "matched": ok})
        return ok

    def summary(self) -> str:
        label = self.fact if self.key is None else f"{self.fact} {self.key}"
        return f"{label} ~ {'|'.join(p.text for p in self.patterns)}"


@dataclass(frozen=True, slots=True)
class FlagTest(Condition):
    fact: str
    """tools (offered) or stream."""
    expected: bool

    def test(self, facts: RequestFacts, trace: Trace | None = None) -> bool:
        value = facts.tools_offered if self.fact == "tools" else facts.stream
        ok = value == self.expected
        if trace is not None:
            trace.append({"test": self.fact, "expected": self.expected, "actual": value, "matched": ok})
        return ok

    def summary(self) -> str:
        return f"{self.fact} {str(self.expected).lower()}"


@dataclass(frozen=True, slots=True)
class TokenRangeTest(Condition):
    min: int | None
    max: int | None

    def test(self, facts: RequestFacts, trace: Trace | None = None) -> bool:
        if trace is None:
            ceiling = facts.prompt_token_ceiling
            decided = None if ceiling is None else self.decided_by(0, ceiling)
            if decided is None:
                decided = self.decided_by(*facts.prompt_token_bounds)
            if decided is not None:
                return decided
        tokens = facts.prompt_tokens
        ok = (self.min is None or tokens >= self.min) and (self.max is None or tokens <= self.max)
        if trace is not None:
            trace.append({"test": "prompt_tokens", "expected": {"min": self.min, "max": self.max},
                          "actual": tokens, "matched": ok})
        return ok

    def decided_by(self, low: int, high: int) -> bool | None:
        """The outcome when every count in [low, high] gives the same one, else None (count to know)."""
        if (self.min is not None and high < self.min) or (self.max is not None and low > self.max):
            return False
        if (self.min is None or low >= self.min) and (self.max is None or high <= self.max):
            return True
        return None

    @property
    def needs_tokens(self) -> bool:
        return True

    def summary(self) -> str:
        return f"prompt_tokens in [{self.min or 0}, {self.max if self.max is not None else '∞'}]"


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    children: tuple[Condition, ...]

    def test(self, facts: RequestFacts, trace: Trace | None = None) -> bool:
        inner: Trace | None = [] if trace is not None else None
        ok = all(child.test(facts, inner) for child in self.children)
        _nest(trace, "all", inner, ok)
        return ok

    @property
    def needs_tokens(self) -> bool:
        return any(child.needs_tokens for child in self.children)

    def summary(self) -> str:
        return f"all({', '.join(child.summary() for child in self.children)})"


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    children: tuple[Condition, ...]

    def test(self, facts: RequestFacts, trace: Trace | None = None) -> bool:
        inner: Trace | None = [] if trace is not None else None
        ok = any(child.test(facts, inner) for child in self.children)
        _nest(trace, "any", inner, ok)
        return ok

    @property
    def needs_tokens(self) -> bool:
        return any(child.needs_tokens for child in self.children)

    def summary(self) -> str:
        return f"any({', '.join(child.summary() for child in self.children)})"


@dataclass(frozen=True, slots=True)
class NotOf(Condition):
    child: Condition

    def test(self, facts: RequestFacts, trace: Trace | None = None) -> bool:
        inner: Trace | None = [] if trace is not None else None
        ok = not self.child.test(facts, inner)
        _nest(trace, "not", inner, ok)
        return ok

    @property
    def needs_tokens(self) -> bool:
        return self.child.needs_tokens

    def summary(self) -> str:
        return f"not({self.child.summary()})"


def _nest(trace: Trace | None, kind: str, inner: Trace | None, ok: bool) -> None:
    if trace is not None:
        trace.append({kind: inner, "matched": ok})


Where = tuple[str | int, ...]


def compile_match(spec: MatchSpec, where: Where, errors: list[tuple[Where, str]]) -> Condition:
    """Turn a validated :class:`MatchSpec` into a condition tree; collect bad patterns as (path, reason)."""
    tests: list[Condition] = []

    def patterns(value: Patterns, path: Where) -> tuple[Pattern, ...]:
        out = []
        for i, text in enumerate(as_list(value)):
            try:
                out.append(compile_pattern(text))
            except ValueError as exc:
                errors.append(((*path, i) if isinstance(value, list) else path, str(exc)))
        return tuple(out)

    for fact in ("model", "agent", "role", "user", "api"):
        value = getattr(spec, fact)
        if value is not None:
            tests.append(PatternTest(fact, patterns(value, (*where, fact))))
    for fact, table in (("header", spec.headers), ("metadata", spec.metadata)):
        for key, value in (table or {}).items():
            field = "headers" if fact == "header" else "metadata"
            name = header_name(key) if fact == "header" else key
            tests.append(PatternTest(fact, patterns(value, (*where, field, key)), key=name))
    for fact in ("tools", "stream"):
        value = getattr(spec, fact)
        if value is not None:
            tests.append(FlagTest(fact, value))
    if spec.prompt_tokens is not None:
        tests.append(TokenRangeTest(spec.prompt_tokens.min, spec.prompt_tokens.max))
    if spec.all is not None:
        tests.append(AllOf(tuple(compile_match(s, (*where, "all", i), errors) for i, s in enumerate(spec.all))))
    if spec.any is not None:
        tests.append(AnyOf(tuple(compile_match(s, (*where, "any", i), errors) for i, s in enumerate(spec.any))))
    if spec.not_ is not None:
        tests.append(NotOf(compile_match(spec.not_, (*where, "not"), errors)))
    # Cheap tests first, so the token count is computed only when everything else already holds.
    tests.sort(key=lambda test: test.needs_tokens)
    return tests[0] if len(tests) == 1 else AllOf(tuple(tests))
