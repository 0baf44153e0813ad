"""The fake MCP server over Streamable HTTP, driven by the official client: it lists its tools, answers calls,
and records each request with the headers that arrived (which is what the gateway's tests rely on)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitRequestParams, ElicitResult, TextContent

from tests.fakes.mcp_fake import FakeMcpServer

pytestmark = pytest.mark.timeout(60)

TOOLS = {"get_issue", "search", "create_issue", "delete_repo", "echo", "slow_progress", "ask_user", "hang",
         "crash", "big", "add_tool", "whoami"}


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeMcpServer]:
    with FakeMcpServer.start_http(tmp_path, name="github") as server:
        yield server


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def answer_elicitation(context: Any, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"answer": "yes"})


def test_tools_calls_and_records_with_headers(github: FakeMcpServer) -> None:
    async def scenario() -> dict[str, Any]:
        headers = {"Authorization": "Bearer role-token-1"}
        async with httpx2.AsyncClient(headers=headers, timeout=10) as http, \
                streamable_http_client(github.url, http_client=http) as (read, write), \
                ClientSession(read, write, elicitation_callback=answer_elicitation) as session:
            await session.initialize()
            tools = {tool.name for tool in (await session.list_tools()).tools}
            issue = text_of(await session.call_tool("get_issue", {"number": 7}))
            whoami = text_of(await session.call_tool("whoami", {}))
            echoed = json.loads(text_of(await session.call_tool("echo", {"value": {"a": [1, 2]}})))
            asked = text_of(await session.call_tool("ask_user", {"question": "ok?"}))
            readme = await session.read_resource("repo://readme")
            prompt = await session.get_prompt("review", {"code": "x = 1"})
            return {"tools": tools, "issue": issue, "whoami": whoami, "echoed": echoed, "asked": asked,
                    "readme": readme, "prompt": prompt}

    got = anyio.run(scenario)
    assert got["tools"] >= TOOLS
    assert got["issue"] == "issue 7"
    assert got["whoami"] == "Bearer role-token-1"
    assert got["echoed"] == {"a": [1, 2]}
    assert got["asked"] == "answer: yes"

    calls = github.tool_calls("get_issue")
    assert len(calls) == 1
    assert calls[0]["arguments"] == {"number": 7}
    assert calls[0]["headers"]["authorization"] == "Bearer role-token-1"
    assert calls[0]["session_id"]
    methods = [call["method"] for call in github.calls()]
    assert methods[0] == "initialize"
    assert {"tools/list", "resources/read", "prompts/get"} <= set(methods)
    assert [c["uri"] for c in github.calls() if c["method"] == "resources/read"] == ["repo://readme"]
    assert [c["prompt"] for c in github.calls() if c["method"] == "prompts/get"] == ["review"]


def test_add_tool_notifies_and_kill_stops_answering(github: FakeMcpServer) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(getattr(message, "root", message), "method", None) == "notifications/tools/list_changed":
            changed.set()

    async def scenario() -> set[str]:
        async with streamable_http_client(github.url) as (read, write), \
                ClientSession(read, write, message_handler=on_message) as session:
            await session.initialize()
            await session.call_tool("add_tool", {"name": "fresh"})
            with anyio.fail_after(5):
                await changed.wait()
            return {tool.name for tool in (await session.list_tools()).tools}

    assert "fresh" in anyio.run(scenario)
    github.kill()
    assert github.process.poll() is not None
