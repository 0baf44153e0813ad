"""Configs and clients for the MCP gateway tests: agents of several roles, the official mcp client SDK.

Agents (key = ``<agent>-key``): ``reader`` (role reader: github read tools), ``maintainer`` (role maintainer:
github but ``delete_*``, with a condition on ``create_issue``), ``intruder`` (role reader too: another agent of
the same role, for session ownership). Servers are given as YAML mapping texts by the test.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

MOCK_MODELS = """
providers: {mock: {type: mock}}
deployments: {m: {provider: mock, model: mock}}
models: {m: [m]}
"""


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def agents(*pairs: tuple[str, str]) -> str:
    """``agents:`` entries for (agent, role) pairs, each with the key ``<agent>-key``."""
    lines = ["agents:"]
    lines += [f'  {agent}: {{role: {role}, keys: [{{hash: "{key_hash(agent + "-key")}"}}]}}' for agent, role in pairs]
    return "\n".join(lines) + "\n"


def gateway_config(servers: str, roles: str, agent_pairs: tuple[tuple[str, str], ...]) -> str:
    return f"{MOCK_MODELS}mcp_servers:\n{servers}\nroles:\n{roles}\n{agents(*agent_pairs)}"


@contextlib.asynccontextmanager
async def mcp_session(url: str, key: str | None, max_event_bytes: int = 1024 * 1024,
                      **session_args: Any) -> AsyncIterator[ClientSession]:
    """An initialized official MCP client session on ``url`` with ``key`` as Bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (httpx2.AsyncClient(headers=headers, timeout=30) as http,
                streamable_http_client(url, http_client=http, max_sse_event_size=max_event_bytes) as (read, write),
                ClientSession(read, write, **session_args) as session):
        await session.initialize()
        yield session


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)
