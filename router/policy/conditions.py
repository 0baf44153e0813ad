"""Argument conditions: compiled once from config, evaluated on a tool call's parsed arguments.

Evaluation is three-valued: True (the condition matches), False (it does not) or None (it cannot be
decided: a path is missing where a value is needed, or the value has the wrong type). Composition
follows Kleene logic, so the answer does not depend on the order of members: ``all`` is False as soon as
one member is False, ``any`` is True as soon as one is True, otherwise an undecided member makes the
whole undecided. The caller denies on None: a condition that cannot be evaluated never lets a call pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.config.roles_schema import Condition
from router.policy.names import normalize

Verdict = bool | None
Evaluator = Callable[[Any], Verdict]

_MISSING = object()
_SEGMENT = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[(?:"([^"\\\]]*)"|'([^'\\\]]*)')\]""")
_FIRST = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``loc`` is where, relative to the condition's ``when``."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


def parse_path(text: str) -> tuple[str | int, ...]:
    """``environment``, ``a.b[0]``, ``$.a["odd key"]`` or ``arguments.a`` -> keys and indexes.

    ``$`` and a leading ``arguments`` both name the arguments object itself; write ``$.arguments`` for an
    argument that is literally called "arguments".
    """
    rest = text.strip()
    if rest.startswith("$"):
        rest = rest[1:]
    elif rest == "arguments" or rest.startswith(("arguments.", "arguments[")):
        rest = rest[len("arguments"):]
    parts: list[str | int] = []
    pos = 0
    if rest and rest[0] not in ".[":
        first = _FIRST.match(rest)
        if first is None:
            raise ConditionError(f"invalid JSON path {text!r}")
        parts.append(first.group(0))
        pos = first.end()
    while pos < len(rest):
        match = _SEGMENT.match(rest, pos)
        if match is None:
            raise ConditionError(f"invalid JSON path {text!r} (at {rest[pos:]!r}); use a.b[0] or $.a[\"key\"]")
        name, index, dq, sq = match.groups()
        parts.append(int(index) if index is not None else name if name is not None else dq if dq is not None else sq)
        pos = match.end()
    return tuple(parts)


def lookup(document: Any, path: tuple[str | int, ...]) -> Any:
    node = document
    for part in path:
        found = (isinstance(part, str) and isinstance(node, dict) and part in node) or (
            isinstance(part, int) and isinstance(node, list) and part < len(node))
        if not found:
            return _MISSING
        node = node[part]
    return node


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "other"


def _equal(actual: Any, expected: Any) -> Verdict:
    """Type-strict equality; strings compare normalised (NFKC, case-folded, trimmed). None on a type mismatch."""
    if _kind(actual) != _kind(expected):
        return None
    if isinstance(actual, str):
        return normalize(actual) == normalize(expected)
    return bool(actual == expected)


def _member(actual: Any, options: list[Any]) -> Verdict:
    verdicts = [_equal(actual, option) for option in options]
    if True in verdicts:
        return True
    return False if False in verdicts else None


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _leaf(cond: Condition) -> Evaluator:
    assert cond.path is not None and cond.op is not None
    path, op, value = parse_path(cond.path), cond.op, cond.value

    def present(args: Any) -> Any:
        return lookup(args, path)

    if op == "exists":
        if value is not None and not isinstance(value, bool):
            raise ConditionError("op 'exists' takes value true, false or nothing", ("value",))
        want = value is not False
        return lambda args: (present(args) is not _MISSING) == want
    if op in ("eq", "ne"):
        negate = op == "ne"

        def eq(args: Any) -> Verdict:
            actual = present(args)
            verdict = None if actual is _MISSING else _equal(actual, value)
            return verdict if verdict is None or not negate else not verdict
        return eq
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConditionError(f"op {op!r} needs a non-empty list as value", ("value",))
        negate = op == "not_in"

        def member(args: Any) -> Verdict:
            actual = present(args)
            verdict = None if actual is _MISSING else _member(actual, value)
            return verdict if verdict is None or not negate else not verdict
        return member
    if op in ("glob", "regex"):
        if not isinstance(value, str):
            raise ConditionError(f"op {op!r} needs a string value", ("value",))
        if op == "glob":
            compiled = re.compile(r"(?s:" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                                                     for c in normalize(value)) + r")\Z")

            def glob(args: Any) -> Verdict:
                actual = present(args)
                return bool(compiled.match(normalize(actual))) if isinstance(actual, str) else None
            return glob
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ConditionError(f"invalid regex {value!r}: {exc}", ("value",)) from None

        def regex(args: Any) -> Verdict:
            actual = present(args)
            return bool(pattern.search(actual)) if isinstance(actual, str) else None
        return regex
    if not _is_number(value):
        raise ConditionError(f"op {op!r} needs a number as value", ("value",))
    compare = _COMPARE[op]

    def numeric(args: Any) -> Verdict:
        actual = present(args)
        return compare(actual, value) if _is_number(actual) else None
    return numeric


def compile_condition(cond: Condition, loc: tuple[str | int, ...] = ()) -> Evaluator:
    """Compile a condition tree; ConditionError (with its location) when any part is invalid."""
    try:
        if cond.path is not None:
            return _leaf(cond)
    except ConditionError as exc:
        raise ConditionError(str(exc), (*loc, *exc.loc)) from None
    if cond.not_ is not None:
        inner = compile_condition(cond.not_, (*loc, "not"))
        return lambda args: None if (v := inner(args)) is None else not v
    key = "all" if cond.all is not None else "any"
    members = cond.all if cond.all is not None else cond.any
    if not members:
        raise ConditionError(f"'{key}' needs at least one condition", (*loc, key))
    compiled = [compile_condition(member, (*loc, key, i)) for i, member in enumerate(members)]
    decisive = key == "any"  # the member verdict that settles the whole: True for any, False for all

    def combine(args: Any) -> Verdict:
        undecided = False
        for member in compiled:
            verdict = member(args)
            if verdict is decisive:
                return decisive
            undecided = undecided or verdict is None
        return None if undecided else not decisive
    return combine


@dataclass(frozen=True)
class CompiledCondition:
    """``tool`` pattern, the evaluator of ``when``, and the text shown as rule and reason."""

    tool: str
    matcher: re.Pattern[str]
    evaluate: Evaluator
    rule: str
    reason: str | None
    shadow: bool = False
    """Recorded as would_deny (rule ``shadow:<rule>``) when it matches, never enforced."""
