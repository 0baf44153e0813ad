"""Test-case files beside the config (routing-rule tests, policy tests): one YAML list of cases (or a mapping with
``tests:``), each validated by its own model and checked against a snapshot; every failure or malformed case is a
problem at its own line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from router.config.errors import ConfigError, ConfigProblem
from router.config.loader import validate_model
from router.config.snapshot import Snapshot
from router.config.yaml_source import YamlDoc, read_yaml

Case = TypeVar("Case")


def _cases(doc: YamlDoc, kind: str) -> tuple[list[tuple[tuple[str | int, ...], Any]], list[ConfigProblem]]:
    data = doc.data
    if isinstance(data, dict) and set(data) == {"tests"} and isinstance(data["tests"], list):
        return [(("tests", i), item) for i, item in enumerate(data["tests"])], []
    if isinstance(data, list):
        return [((i,), item) for i, item in enumerate(data)], []
    if data in ({}, None):
        return [], []
    return [], [doc.problem((), f"a {kind} file is a YAML list of test cases (or a mapping with 'tests:')")]


def run_case_file(path: Path, snapshot: Snapshot, model: type[Case], kind: str, label: str,
                  mismatches: Callable[[Case, Snapshot], list[str]]) -> tuple[int, list[ConfigProblem]]:
    """``(cases passed, problems)`` of one file: ``kind`` names the file in messages (``rule test``), ``label``
    each case (``test 'name'``)."""
    try:
        doc = read_yaml(path)
    except ConfigError as exc:
        return 0, list(exc.problems)
    cases, problems = _cases(doc, kind)
    passed = 0
    for where, item in cases:
        try:
            case: Case = validate_model(model, item, doc, prefix=where)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        name = getattr(case, "name", None)
        title = f"{label} {name!r}" if name else f"{label} #{where[-1]}"
        found = mismatches(case, snapshot)
        problems.extend(doc.problem(where, f"{title}: {text}") for text in found)
        passed += not found
    return passed, problems
