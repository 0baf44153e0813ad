"""Checks across the tool plane's config: server names, and roles that name servers or roles that do not exist.

A typo in a server name would silently grant nothing (or, in a credential, leave a role without its token),
so every name a role or a credential gives must exist; globs may match nothing.
"""

from __future__ import annotations

import re
from typing import Any

from router.config.errors import ConfigProblem
from router.config.mcp_schema import ANY_ROLE, SERVER_NAME
from router.config.yaml_source import YamlDoc
from router.mcp.policy import qualify_pattern

_NAME = re.compile(SERVER_NAME)


def _server_part(pattern: str) -> str:
    return qualify_pattern(pattern).split(":", 1)[0].strip().lower()


def _is_glob(text: str) -> bool:
    return "*" in text or "?" in text


def mcp_cross_check(spec: Any, doc: YamlDoc) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    servers: dict[str, Any] = spec.mcp_servers
    for name, server in servers.items():
        if not _NAME.fullmatch(name):
            problems.append(doc.problem(("mcp_servers", name), f"MCP server name {name!r} must be 1-32 lower-case "
                                                                "letters, digits and dashes (it is part of a path "
                                                                "and of qualified tool names)"))
        for role in server.credentials:
            if role != ANY_ROLE and role not in spec.roles:
                problems.append(doc.problem(("mcp_servers", name, "credentials", role),
                                            f"MCP server {name!r} has a credential for unknown role {role!r}"))
    known = ", ".join(sorted(servers)) or "none"
    for role_name, role in spec.roles.items():
        mcp = role.mcp
        for i, text in enumerate(mcp.servers):
            if not _is_glob(text) and text not in servers:
                problems.append(doc.problem(("roles", role_name, "mcp", "servers", i),
                                            f"role {role_name!r} names unknown MCP server {text!r} (known: {known})"))
        checked = [("allow", i, text) for i, text in enumerate(mcp.tools.allow)]
        checked += [("deny", i, entry.pattern) for i, entry in enumerate(mcp.tools.deny_rules())]
        for kind, i, text in checked:
            part = _server_part(text)
            if not _is_glob(part) and part not in servers:
                problems.append(doc.problem(("roles", role_name, "mcp", "tools", kind, i),
                                            f"role {role_name!r}: pattern {text!r} names unknown MCP server {part!r} "
                                            f"(known: {known})"))
        for i, cond in enumerate(mcp.tools.conditions):
            part = _server_part(cond.tool)
            if not _is_glob(part) and part not in servers:
                problems.append(doc.problem(("roles", role_name, "mcp", "tools", "conditions", i, "tool"),
                                            f"role {role_name!r}: condition tool {cond.tool!r} names unknown MCP "
                                            f"server {part!r} (known: {known})"))
        if (mcp.tools.allow or mcp.limits) and not mcp.servers:
            problems.append(doc.problem(("roles", role_name, "mcp"),
                                        f"role {role_name!r} allows MCP tools but lists no mcp.servers it may reach"))
    return problems
