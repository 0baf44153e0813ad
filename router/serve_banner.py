"""What ``agent-router serve`` says once as it starts: what it serves, from where, and (with the built-in default
config) how to get a first key, since every request needs one."""

from __future__ import annotations

import shlex
from pathlib import Path

from router import __version__
from router.config import Snapshot
from router.settings import Settings
from router.store.database import database_dialect, describe_database


def first_key_command(settings: Settings, snapshot: Snapshot) -> str:
    """The exact ``keys create`` that gives this server a usable key (same database, a role that exists)."""
    role = "default" if "default" in snapshot.roles else min(snapshot.roles, default="ROLE")
    command = f"agent-router keys create --agent my-agent --role {role}"
    if database_dialect(settings.database_url) == "sqlite":
        # Absolute, so that it works from any directory (the default path is relative to this one).
        path = describe_database(settings.database_url).removeprefix("SQLite file ")
        return f"{command} --database-url {shlex.quote('sqlite:///' + path)}"
    return f"{command}   # with the same AGENT_ROUTER_DATABASE_URL (not shown: it may hold a password)"


def serve_banner(settings: Settings, snapshot: Snapshot) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    lines = [f"agent-router {__version__} serving http://{host}:{settings.port}",
             f"  config:   {Path(settings.config).resolve() if settings.config else 'built-in default'}",
             f"  database: {describe_database(settings.database_url)}",
             f"  models:   {', '.join(sorted(snapshot.models)) or 'none'}"]
    if snapshot.spec.mcp_servers:
        lines.append(f"  mcp:      {', '.join(sorted(snapshot.spec.mcp_servers))} (at /mcp/<server>, together at /mcp)")
    if not settings.config:
        lines += ["  every request needs an agent key; create a first one with:",
                  f"    {first_key_command(settings, snapshot)}"]
    return "\n".join(lines)
