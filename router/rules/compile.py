"""Load rule files named by the config's ``rules:`` field and compile them for the snapshot.

Order: the entries of ``rules:`` as listed; inside a folder, its ``*.yaml`` / ``*.yml`` files sorted by name
(``*.tests.yaml`` files are rule tests, not rules); rules in file order; the one ``default:`` (if any) last.
Every problem (bad field, unknown deployment, bad pattern, duplicate name...) is reported with file and line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.config.errors import ConfigError, ConfigProblem
from router.config.loader import validate_model
from router.config.schema import ConfigFile
from router.config.yaml_source import YamlDoc, read_yaml
from router.model_catalog import model_info, prefetch
from router.rules.conditions import AllOf, Condition, Where, compile_match
from router.rules.routes import Arm, ChainRoute, Route, SplitRoute, StrategyRoute
from router.rules.schema import DefaultSpec, RouteSpec, RuleSpec
from router.rules.strategies import PoolMember

RULE_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".tests.yaml", ".tests.yml")


@dataclass(frozen=True)
class CompiledRule:
    name: str
    file: str
    line: int | None
    condition: Condition | None
    """None: the rule matches every request."""
    route: Route
    is_default: bool = False
    description: str | None = None
    summary: str = ""
    """The condition as text, for the plan's reason: ``model ~ gpt-4*, stream false``."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def needs_tokens(self) -> bool:
        return bool(self.condition and self.condition.needs_tokens) or self.route.needs_tokens


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    files: tuple[str, ...]
    digest: str
    folders: tuple[str, ...] = ()
    """Rule folders named in the config: a watcher can notice rule files added to or removed from them."""


@dataclass(frozen=True)
class RuleSources:
    rule_files: tuple[Path, ...]
    test_files: tuple[Path, ...]
    folders: tuple[Path, ...] = ()


def find_rule_sources(entries: str | list[str] | None, base_dir: Path, config: YamlDoc | None,
                      problems: list[ConfigProblem]) -> RuleSources:
    """The rule files and rule-test files the config's ``rules:`` entries point at."""
    if entries is None:
        return RuleSources((), ())
    listed = [entries] if isinstance(entries, str) else entries
    rule_files: list[Path] = []
    test_files: list[Path] = []
    folders: list[Path] = []
    for i, entry in enumerate(listed):
        path = (base_dir / entry).resolve()
        if path.is_dir():
            folders.append(path)
            names = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(RULE_SUFFIXES))
            test_files.extend(p for p in names if p.name.endswith(TEST_SUFFIXES))
            rule_files.extend(p for p in names if not p.name.endswith(TEST_SUFFIXES))
        elif path.is_file():
            rule_files.append(path)
            stem = path.name.rsplit(".", 1)[0]
            test_files.extend(p for p in (path.with_name(stem + s) for s in TEST_SUFFIXES) if p.is_file())
        else:
            where = ("rules", i) if isinstance(entries, list) else ("rules",)
            file = config.file if config else str(base_dir)
            line = config.line_of(where) if config else None
            problems.append(ConfigProblem(file, line, f"rules: {entry!r} is neither a file nor a folder ({path})"))
    return RuleSources(tuple(dict.fromkeys(rule_files)), tuple(dict.fromkeys(test_files)), tuple(folders))


class _Compiler:
    def __init__(self, spec: ConfigFile) -> None:
        self.spec = spec
        self.problems: list[ConfigProblem] = []
        self.rules: list[CompiledRule] = []
        self.default: CompiledRule | None = None
        self.names: dict[str, str] = {}

    def file(self, doc: YamlDoc) -> None:
        """Each rule is validated on its own, so one bad rule does not hide the problems of the others."""
        data = doc.data
        if not isinstance(data, dict):
            self.problems.append(doc.problem((), "a rule file must be a mapping with 'rules:' (and optionally "
                                                 "'default:')"))
            return
        for key in data:
            if key not in ("rules", "default"):
                self.problems.append(doc.problem((key,), f"{key}: unknown field (a rule file has rules, default)"))
        rules = data.get("rules") or []
        if not isinstance(rules, list):
            self.problems.append(doc.problem(("rules",), "rules: a list of rules"))
            rules = []
        for i, item in enumerate(rules):
            parsed = self._validate(RuleSpec, item, doc, ("rules", i))
            compiled = self.rule(parsed, doc, ("rules", i)) if parsed is not None else None
            if compiled is not None:
                self.rules.append(compiled)
        if data.get("default") is None:
            return
        if self.default is not None:
            self.problems.append(doc.problem(("default",), f"a second default (the first is at "
                                                           f"{self.default.where}); keep one"))
            return
        default = self._validate(DefaultSpec, data["default"], doc, ("default",))
        self.default = self.rule(default, doc, ("default",)) if default is not None else None

    def _validate(self, model: type[Any], item: Any, doc: YamlDoc, where: Where) -> Any:
        try:
            return validate_model(model, item, doc, prefix=where)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def rule(self, rule: RuleSpec | DefaultSpec, doc: YamlDoc, where: Where) -> CompiledRule | None:
        before = len(self.problems)
        line = doc.line_of(where)
        here = f"{doc.file}:{line}" if line else doc.file
        if rule.name in self.names:
            self.problems.append(doc.problem((*where, "name"), f"rule name {rule.name!r} is already used at "
                                                               f"{self.names[rule.name]}"))
        self.names.setdefault(rule.name, here)
        condition = None
        if isinstance(rule, RuleSpec) and rule.when is not None:
            errors: list[tuple[Where, str]] = []
            condition = compile_match(rule.when, (*where, "when"), errors)
            self.problems.extend(doc.problem(path, f"{_dotted(path)}: {reason}") for path, reason in errors)
        route = self.route(rule.route, doc, (*where, "route"))
        if len(self.problems) > before or route is None:
            return None
        return CompiledRule(name=rule.name, file=doc.file, line=line, condition=condition, route=route,
                            is_default=isinstance(rule, DefaultSpec), description=rule.description,
                            summary=_summary(condition))

    def route(self, route: RouteSpec, doc: YamlDoc, where: Where) -> Route | None:
        ok = True

        def known(names: list[str], path: Where) -> tuple[str, ...]:
            nonlocal ok
            for i, name in enumerate(names):
                if name not in self.spec.deployments:
                    ok = False
                    self.problems.append(doc.problem((*path, i), f"{_dotted((*path, i))}: unknown deployment "
                                                                 f"{name!r} (known: {self._known()})"))
            return tuple(names)

        set_params, cap_params = dict(route.set_), dict(route.cap)
        if route.deployments is not None:
            chain = known(route.deployments, (*where, "deployments"))
            return ChainRoute(chain, set_params=set_params, cap_params=cap_params) if ok else None
        if route.model is not None:
            if route.model not in self.spec.models:
                known_models = ", ".join(sorted(self.spec.models)) or "none"
                self.problems.append(doc.problem((*where, "model"), f"{_dotted((*where, 'model'))}: unknown model "
                                                                    f"{route.model!r} (known: {known_models})"))
                return None
            return ChainRoute(tuple(self.spec.models[route.model].deployments), model=route.model,
                              set_params=set_params, cap_params=cap_params)
        if route.split is not None:
            arms = tuple(Arm(arm.name or arm.deployments[0], arm.weight,
                             known(arm.deployments, (*where, "split", i, "deployments")))
                         for i, arm in enumerate(route.split))
            return SplitRoute(arms, sticky=route.sticky, set_params=set_params, cap_params=cap_params) if ok else None
        assert route.strategy is not None and route.pool is not None
        pool = known(route.pool, (*where, "pool"))
        if not ok:
            return None
        return StrategyRoute(route.strategy, tuple(self._member(name) for name in pool), set_params=set_params,
                             cap_params=cap_params)

    def _member(self, name: str) -> PoolMember:
        info = model_info(self.spec.deployments[name])
        prices = (info.input_cost_per_token, info.output_cost_per_token)
        price = None if None in prices else sum(p for p in prices if p is not None)
        return PoolMember(name, price, info.context_window)

    def _known(self) -> str:
        names = sorted(self.spec.deployments)
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return shown or "none"


def _summary(condition: Condition | None) -> str:
    if condition is None:
        return ""
    text = condition.summary()
    return text[4:-1] if isinstance(condition, AllOf) else text  # the implicit 'and' of a rule's fields


def _dotted(path: Where) -> str:
    return ".".join(str(part) for part in path)


def compile_rules(spec: ConfigFile, base_dir: Path, config: YamlDoc | None,
                  problems: list[ConfigProblem]) -> RuleSet:
    """Read and compile every rule file; append problems (the caller refuses the config when any)."""
    sources = find_rule_sources(spec.rules, base_dir, config, problems)
    prefetch(deployment.model for deployment in spec.deployments.values())
    compiler = _Compiler(spec)
    digest = hashlib.sha256()
    for path in sources.rule_files:
        try:
            doc = read_yaml(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        digest.update(str(path).encode() + b"\x00" + repr(doc.data).encode() + b"\x00")
        compiler.file(doc)
    problems.extend(compiler.problems)
    rules = [*compiler.rules, *([compiler.default] if compiler.default else [])]
    return RuleSet(tuple(rules), tuple(str(p) for p in sources.rule_files), digest.hexdigest(),
                   tuple(str(p) for p in sources.folders))
