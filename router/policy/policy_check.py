"""What ``agent-router check`` adds for tool policy: the policy tests kept beside the config.

Where they are: the files and folders the config's ``policy_tests:`` names (relative to the config; a folder
means every ``*.policy-tests.yaml`` in it), or, when the config names none, ``<config-stem>.policy-tests.yaml``
next to the config file if there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from router.config.errors import ConfigError, ConfigProblem
from router.config.snapshot import Snapshot
from router.config.yaml_source import read_yaml
from router.policy.policy_tests import run_policy_test_file

SUFFIX = ".policy-tests.yaml"


@dataclass(frozen=True)
class PolicyCheck:
    test_files: int
    tests_passed: int
    problems: list[ConfigProblem]

    @property
    def summary(self) -> str:
        if not self.test_files:
            return "no policy tests"
        return f"{self.tests_passed} policy tests passed in {self.test_files} files"


def _config_line(config: Path, where: tuple[str | int, ...]) -> int | None:
    try:
        return read_yaml(config).line_of(where)
    except ConfigError:
        return None


def find_policy_tests(snapshot: Snapshot, config: Path | None, problems: list[ConfigProblem]) -> list[Path]:
    """The policy test files of this config; a ``policy_tests:`` entry that is no file or folder is a problem."""
    entries = snapshot.spec.policy_tests
    if entries is None:
        if config is None:
            return []
        beside = config.with_name(config.name.rsplit(".", 1)[0] + SUFFIX)
        return [beside] if beside.is_file() else []
    listed = [entries] if isinstance(entries, str) else entries
    found: list[Path] = []
    for i, entry in enumerate(listed):
        path = (Path(snapshot.base_dir) / entry).resolve()
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIX)))
        elif path.is_file():
            found.append(path)
        else:
            where = ("policy_tests", i) if isinstance(entries, list) else ("policy_tests",)
            line = _config_line(config, where) if config is not None else None
            problems.append(ConfigProblem(str(config or snapshot.base_dir), line,
                                          f"policy_tests: {entry!r} is neither a file nor a folder ({path})"))
    return list(dict.fromkeys(found))


def check_policy(snapshot: Snapshot, config: Path | None) -> PolicyCheck:
    """Every policy test of the config run against ``snapshot``; failures and malformed cases as problems."""
    problems: list[ConfigProblem] = []
    files = find_policy_tests(snapshot, config, problems)
    passed = 0
    for path in files:
        report = run_policy_test_file(path, snapshot)
        passed += report.passed
        problems.extend(report.problems)
    return PolicyCheck(len(files), passed, problems)
