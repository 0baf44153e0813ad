"""The tool plane in config: upstream MCP servers (``mcp_servers:``) and what a role may do with them
(``roles.<name>.mcp``). Validated at load time; compiled by :mod:`router.mcp.policy`.

A server is reached over Streamable HTTP (``url``) or started by the router over stdio (``command``). Its
credentials are chosen by the caller's role, so an agent never holds more than its role's token.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from router.config.roles_schema import ToolRules
from router.config.schema import Strict

SERVER_NAME = r"^[a-z0-9][a-z0-9-]{0,31}$"
"""Lower-case letters, digits and inner dashes: a server name is part of a path (``/mcp/<server>``) and of the
qualified tool names of ``/mcp`` (``<server>__<tool>``), so it holds no underscore and no colon."""
ANY_ROLE = "*"


class McpCredential(Strict):
    """What the router adds for one role: HTTP headers (an ``Authorization`` token) or, for stdio, environment
    variables. Values should be ``${ENV_VAR}`` references."""

    headers: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)


class McpServerSpec(Strict):
    """One upstream MCP server: ``url`` (Streamable HTTP) or ``command`` (stdio), never both."""

    description: str | None = None
    url: str | None = Field(default=None, description="Streamable HTTP endpoint, for example https://host/mcp.")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent on every request to the server.")
    command: str | None = Field(default=None, description="stdio: the program the router starts.")
    args: list[str] = Field(default_factory=list)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict, description="stdio: the whole environment of the process "
                                "(nothing of the router's own is inherited), before the role's credential.")
    process: Literal["per_session", "shared"] = Field(
        default="per_session", description="stdio: one process per agent session, or one per credential shared "
                                           "by every session that uses it.")
    idle_seconds: float = Field(default=300.0, gt=0, description="An upstream session (and a stdio process) unused "
                                                                 "this long is closed.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds for one call to answer.")
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to connect and initialize.")
    credentials: dict[str, McpCredential] = Field(
        default_factory=dict, description="By role name; '*' for every other role that may reach the server. "
                                          "When any are listed, a role with none is refused (fail closed).")
    record_arguments: bool = Field(default=False, description="Keep each call's arguments in its record (else "
                                                              "only their hash).")
    record_arguments_bytes: int = Field(default=4096, ge=0, le=1024 * 1024,
                                        description="Largest arguments text kept in a record; longer is cut.")
    max_result_bytes: int = Field(default=8 * 1024 * 1024, ge=1024,
                                  description="Largest tool result relayed; larger is an error result.")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.url is None) == (self.command is None):
            raise ValueError("an MCP server needs exactly one of url (Streamable HTTP) or command (stdio)")
        if self.url is not None:
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("url must be an http:// or https:// URL")
            stdio_only = [name for name in ("args", "cwd", "env", "process") if name in self.model_fields_set]
            if stdio_only or any(cred.env for cred in self.credentials.values()):
                raise ValueError(f"{', '.join(stdio_only) or 'credential env'} is for stdio servers (command)")
        elif self.headers or any(cred.headers for cred in self.credentials.values()):
            raise ValueError("headers are for Streamable HTTP servers (url); a stdio server takes env")
        return self

    @property
    def transport(self) -> Literal["http", "stdio"]:
        return "http" if self.url is not None else "stdio"

    def credential_for(self, role: str | None) -> tuple[str, McpCredential] | None:
        """The credential entry for ``role`` (by name, else ``*``): ``("", empty)`` when the server lists none;
        None when it lists some and none is the role's (the role cannot use the server)."""
        if not self.credentials:
            return "", McpCredential()
        if role is not None and role in self.credentials:
            return role, self.credentials[role]
        if ANY_ROLE in self.credentials:
            return ANY_ROLE, self.credentials[ANY_ROLE]
        return None


Period = Literal["second", "minute", "hour", "day"]
PERIOD_SECONDS: dict[str, float] = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


class McpToolLimit(Strict):
    """At most ``calls`` calls to tools matching ``tool`` per ``per``, counted for the whole role or for each
    of its agents."""

    tool: str = Field(description="A tool pattern, qualified by server (github:delete_*) or not (delete_*).")
    calls: int = Field(gt=0)
    per: Period = "minute"
    scope: Literal["role", "agent"] = "role"


class RoleMcpSpec(Strict):
    """What a role may do on the tool plane. ``servers``: which upstream servers it may reach at all (their
    resources and prompts too); ``tools``: which of their tools, in the model plane's allow / deny / conditions
    language, each pattern ``<server>:<tool>`` or an unqualified ``<tool>`` for every server."""

    servers: list[str] = Field(default_factory=list, description="Server names or globs.")
    tools: ToolRules = Field(default_factory=ToolRules)
    limits: list[McpToolLimit] = Field(default_factory=list)
    on_violation: Literal["refuse", "audit_only"] | None = Field(
        default=None, description="refuse: the call never reaches the server; audit_only: it does, recorded as "
                                  "would_deny. Unset: audit_only when the role's on_violation is, else refuse.")
