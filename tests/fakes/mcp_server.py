"""A fake upstream MCP server, built with the official SDK, run as a subprocess by the tests.

``python -m tests.fakes.mcp_server --transport http --port N --record FILE [--name github]`` serves Streamable
HTTP on 127.0.0.1 at ``/mcp`` (stateful sessions); ``--transport stdio --record FILE`` speaks stdio. Every
inbound request and notification is appended to FILE as one JSON line, flushed before it is handled, so a test
can prove what reached the upstream: the method, the tool and its arguments, the HTTP headers (which
``Authorization`` arrived) or, over stdio, the whole process environment (which variables the process got).

It must run with an empty environment (a stdio child may get no PATH and no HOME), so it needs nothing from
``os.environ`` and takes every path from its arguments.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import IO, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

HTTP_PATH = "/mcp"


class RequestRecorder:
    """Appends one JSON line per inbound message; flushed at once, so a crash right after loses nothing."""

    def __init__(self, path: str, transport: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._transport = transport

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        self.write(ctx)
        return await call_next(ctx)

    def write(self, ctx: ServerRequestContext[Any, Any]) -> None:
        params = dict(ctx.params or {})
        entry: dict[str, Any] = {
            "kind": "notification" if ctx.request_id is None else "request",
            "method": ctx.method,
            "tool": params.get("name") if ctx.method == "tools/call" else None,
            "arguments": params.get("arguments") if ctx.method == "tools/call" else None,
            "uri": params.get("uri"),
            "prompt": params.get("name") if ctx.method == "prompts/get" else None,
            "params": params,
            "pid": os.getpid(),
            "transport": self._transport,
        }
        headers = getattr(ctx.request, "headers", None)
        if headers is not None:
            entry["headers"] = {key.lower(): value for key, value in headers.items()}
            entry["session_id"] = entry["headers"].get("mcp-session-id")
        else:
            entry["env"] = dict(os.environ)
            entry["session_id"] = None
        self._file.write(json.dumps(entry, default=str) + "\n")
        self._file.flush()


class Answer(BaseModel):
    answer: str


def build_server(name: str, recorder: RequestRecorder) -> MCPServer:
    """The fake's tools, resource and prompt; ``recorder`` sees every message before it is handled."""
    server: MCPServer = MCPServer(name, log_level="WARNING", middleware=[recorder])

    @server.tool()
    def get_issue(number: int) -> str:
        return f"issue {number}"

    @server.tool()
    def search(query: str) -> str:
        return f"results for {query}"

    @server.tool()
    def create_issue(repo: str, title: str, body: str = "") -> str:
        return f"created {repo}: {title}"

    @server.tool()
    def delete_repo(repo: str) -> str:
        return f"deleted {repo}"

    @server.tool()
    def echo(value: Any) -> str:
        return json.dumps(value)

    @server.tool()
    async def slow_progress(steps: int, ctx: Context) -> str:
        for step in range(1, min(steps, 1000) + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            await anyio.sleep(0.05)
        return "done"

    @server.tool()
    async def ask_user(question: str, ctx: Context) -> str:
        result = await ctx.elicit(question, schema=Answer)
        if result.action == "accept":
            return f"answer: {result.data.answer}"
        return "declined"

    @server.tool()
    async def hang() -> str:
        await anyio.sleep(600)
        return "woke"

    @server.tool()
    def crash() -> str:
        """Dies mid-call, saying so on stderr (with FAKE_TOKEN, so a test can check the router masks it)."""
        os.write(2, f"fake server crashing (FAKE_TOKEN={os.environ.get('FAKE_TOKEN', '')})\n".encode())
        os._exit(3)

    @server.tool()
    def big(size: int) -> str:
        return "x" * size

    @server.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        def added() -> str:
            return f"{name} ran"

        server.add_tool(added, name=name, description=f"added at runtime: {name}")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    @server.tool()
    def whoami(ctx: Context) -> str:
        headers = ctx.request_context.request and getattr(ctx.request_context.request, "headers", None)
        if headers is not None:
            return str(headers.get("authorization", ""))
        return os.environ.get("FAKE_TOKEN", "")

    @server.resource("repo://readme")
    def readme() -> str:
        return f"# {name}\nA fake repository."

    @server.prompt()
    def review(code: str) -> str:
        return f"Please review this code:\n{code}"

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=("http", "stdio"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", required=True)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--json-response", action="store_true", help="HTTP: one JSON body per answer, no SSE")
    args = parser.parse_args(argv)
    server = build_server(args.name, RequestRecorder(args.record, args.transport))
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port, streamable_http_path=HTTP_PATH,
                   json_response=args.json_response)


if __name__ == "__main__":
    main()
