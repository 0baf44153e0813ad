"""Read YAML while remembering the line of every value, and expand ``${ENV_VAR}`` references.

Pydantic reports errors by path (``("deployments", "gpt", "provider")``); :class:`YamlDoc` turns a path
back into a line, so every config error can say where it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from router.config.errors import ConfigError, ConfigProblem

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# ``${VAR}`` is not valid YAML inside a flow mapping ({a: ${VAR}}), so references are swapped for a
# brace-free placeholder before parsing and expanded afterwards, on the same line.
_PLACEHOLDER = re.compile(r"__ENVREF(\d+)__")
# libyaml's parser builds the same nodes (with lines) about 15x faster; its error messages are terser, so a
# text it refuses is parsed again by the pure-Python one to say what is wrong.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[str | int, ...]


@dataclass
class YamlDoc:
    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    env_refs: list[tuple[str, str | None]] = field(default_factory=list)

    def line_of(self, path: Path_) -> int | None:
        """The line of the deepest known prefix of ``path`` (a missing key points at its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def problem(self, path: Path_, reason: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line_of(path), reason)


def _expand_env(value: str, doc: YamlDoc, path: Path_, problems: list[ConfigProblem]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = doc.env_refs[int(match.group(1))]
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        hint = f"write ${{{name}:-}} to allow empty"
        problems.append(doc.problem(path, f"environment variable {name} is not set ({hint})"))
        return ""

    return _PLACEHOLDER.sub(replace, value)


def _build(node: yaml.Node, doc: YamlDoc, path: Path_, problems: list[ConfigProblem],
           scalars: yaml.constructor.SafeConstructor) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else yaml.safe_load(yaml.serialize(key_node))
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                problems.append(ConfigProblem(doc.file, key_node.start_mark.line + 1, f"duplicate key {key!r}"))
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, doc, (*path, key), problems, scalars)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, doc, (*path, i), problems, scalars) for i, item in enumerate(node.value)]
    value = scalars.construct_object(node, deep=True) if node.tag != "tag:yaml.org,2002:str" else node.value
    if isinstance(value, str) and "__ENVREF" in value:
        value = _expand_env(value, doc, path, problems)
    return value


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse ``text``; raise :class:`ConfigError` with the line of a syntax error."""
    doc = YamlDoc(file=file, data=None)

    def hide(match: re.Match[str]) -> str:
        doc.env_refs.append((match.group(1), match.group(2)))
        return f"__ENVREF{len(doc.env_refs) - 1}__"

    text = _ENV_REF.sub(hide, text)
    try:
        try:
            node = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(file, mark.line + 1 if mark else None, f"invalid YAML: {reason}")]) from None
    if node is None:
        doc.data = {}
        return doc
    problems: list[ConfigProblem] = []
    doc.data = _build(node, doc, (), problems, yaml.constructor.SafeConstructor())
    if problems:
        raise ConfigError(problems)
    return doc


def read_yaml(path: Path) -> YamlDoc:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(str(path), None, "not UTF-8 text")]) from None
    return parse_yaml(text, str(path))
