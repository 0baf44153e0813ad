"""Load config files into a validated :class:`Snapshot`, or refuse them with file, line and reason."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from router.config.defaults import DEFAULT_CONFIG_NAME, add_env_providers, default_config_text
from router.config.errors import ConfigError, ConfigProblem
from router.config.schema import ConfigFile
from router.config.snapshot import Snapshot
from router.config.yaml_source import YamlDoc, parse_yaml, read_yaml


def validate_model(model: type[Any], data: Any, doc: YamlDoc, prefix: tuple[str | int, ...] = ()) -> Any:
    """Validate ``data`` with a pydantic model; map every error to the YAML line it comes from."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = (*prefix, *err["loc"])
            field = ".".join(str(part) for part in loc) or "(top level)"
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(doc.problem(loc, f"{field}: {message}"))
        raise ConfigError(problems) from None


def _cross_check(spec: ConfigFile, doc: YamlDoc) -> list[ConfigProblem]:
    problems = []
    for name, deployment in spec.deployments.items():
        if deployment.provider not in spec.providers:
            known = ", ".join(sorted(spec.providers)) or "none"
            problems.append(doc.problem(("deployments", name, "provider"),
                                        f"deployment {name!r} names unknown provider {deployment.provider!r} "
                                        f"(known: {known})"))
    for name, model in spec.models.items():
        for i, member in enumerate(model.deployments):
            if member not in spec.deployments:
                problems.append(doc.problem(("models", name, i),
                                            f"model {name!r} names unknown deployment {member!r}"))
    for name, agent in spec.agents.items():
        if agent.role not in spec.roles:
            problems.append(doc.problem(("agents", name, "role"), f"agent {name!r} has unknown role {agent.role!r}"))
    if not spec.models:
        problems.append(doc.problem(("models",), "no public models: agents would have nothing to ask for"))
    return problems


def load_document(path: str | None) -> tuple[YamlDoc, Path]:
    if path is None:
        doc = parse_yaml(default_config_text(), DEFAULT_CONFIG_NAME)
        doc.data = add_env_providers(doc.data if isinstance(doc.data, dict) else {})
        return doc, Path.cwd()
    file = Path(path)
    return read_yaml(file), file.resolve().parent


def load_snapshot(path: str | None = None) -> Snapshot:
    """Read, validate and compile the whole config; raise :class:`ConfigError` listing every problem."""
    doc, base_dir = load_document(path)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "the config must be a mapping of sections (providers, deployments...)")])
    spec: ConfigFile = validate_model(ConfigFile, doc.data, doc)
    problems = _cross_check(spec, doc)
    from router.rules.compile import compile_rules  # here: the rules package imports this module

    rule_set = compile_rules(spec, base_dir, doc, problems)
    from router.mcp.config_check import mcp_cross_check
    from router.policy.load import compile_mcp_policies, compile_tool_policies  # here: config imports no policy

    tool_policies = compile_tool_policies(spec, doc, problems)
    mcp_policies = compile_mcp_policies(spec, doc, problems)
    problems += mcp_cross_check(spec, doc)
    if problems:
        raise ConfigError(problems)
    digest = hashlib.sha256(doc.file.encode())
    digest.update(repr(doc.data).encode())
    digest.update(rule_set.digest.encode())
    files = (() if path is None else (str(Path(path).resolve()),)) + rule_set.files
    return Snapshot(
        version=digest.hexdigest()[:16],
        files=files,
        spec=spec,
        models={name: tuple(model.deployments) for name, model in spec.models.items()},
        base_dir=str(base_dir),
        roles=dict(spec.roles),
        agents=dict(spec.agents),
        rules=rule_set.rules,
        extras={"tool_policies": tool_policies, "mcp_policies": mcp_policies, "rule_folders": rule_set.folders},
    )
