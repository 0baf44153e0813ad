"""Names on the aggregated endpoint ``/mcp``: every server's tools and prompts as one server's, qualified.

``<server>__<name>``: a server name holds no underscore (see :data:`router.config.mcp_schema.SERVER_NAME`), so
the first ``__`` always separates the two, and the result stays in the character set function-calling APIs
accept for tool names (letters, digits, ``_`` and ``-``), which is how agents hand MCP tools to a model.
"""

from __future__ import annotations

SEPARATOR = "__"


def join(server: str, name: str) -> str:
    return f"{server}{SEPARATOR}{name}"


def split(qualified: str) -> tuple[str, str] | None:
    """``(server, name)``, or None when ``qualified`` names no server."""
    server, sep, name = qualified.partition(SEPARATOR)
    return (server, name) if sep and server and name else None
