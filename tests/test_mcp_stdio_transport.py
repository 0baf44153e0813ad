"""The router's stdio transport, driven by the official ClientSession against the fake MCP server as a real child
process: only the configured environment reaches it, no process outlives the context, a crash mid-call is an
error within seconds, and a garbage line from a server costs that line only."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp.types import TextContent

from router.mcp.stdio_transport import InvalidServerLine, StdioProcess, stdio_transport
from tests.fakes.mcp_fake import REPO_ROOT, read_records, stdio_spec, tool_records

pytestmark = pytest.mark.timeout(60)

TOKEN = "fake-token-7f3a9c2e"


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def gone(pgid: int, within: float = 2.0) -> bool:
    """No live process is left in the group within ``within`` seconds (a SIGKILLed grandchild takes a moment to
    die). Zombies count as gone: an orphan is reparented to PID 1, which in some sandboxes never reaps it."""
    deadline = time.monotonic() + within
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_session_over_stdio_sees_only_the_configured_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_SECRET", "parent-secret-do-not-pass")
    spec = stdio_spec(tmp_path)
    env = {"FAKE_TOKEN": TOKEN, "ONLY_THIS": "1"}

    async def scenario() -> tuple[set[str], str, str, StdioProcess]:
        async with stdio_transport(spec["command"], spec["args"], env=env, cwd=spec["cwd"]) as streams:
            read, write = streams
            async with ClientSession(read, write) as session:
                with anyio.fail_after(15):
                    await session.initialize()
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    issue = text_of(await session.call_tool("get_issue", {"number": 3}))
                    whoami = text_of(await session.call_tool("whoami", {}))
            return tools, issue, whoami, streams.process

    tools, issue, whoami, process = anyio.run(scenario)
    assert {"get_issue", "whoami", "crash"} <= tools
    assert (issue, whoami) == ("issue 3", TOKEN)
    [call] = tool_records(spec["record"], "get_issue")
    assert call["arguments"] == {"number": 3}
    # Python itself may add LC_CTYPE when it coerces the C locale (PEP 538); nothing else may appear.
    assert {k: v for k, v in call["env"].items() if k != "LC_CTYPE"} == env
    assert "ROUTER_SECRET" not in call["env"] and "PATH" not in call["env"] and "HOME" not in call["env"]
    assert call["pid"] == process.pid
    assert process.returncode is not None
    assert gone(process.pid)


def test_crash_mid_call_is_an_error_with_the_reason(tmp_path: Path) -> None:
    spec = stdio_spec(tmp_path)

    async def scenario() -> tuple[BaseException, StdioProcess]:
        async with stdio_transport(spec["command"], spec["args"], env={"FAKE_TOKEN": TOKEN},
                                   cwd=spec["cwd"]) as streams, ClientSession(*streams) as session:
            with anyio.fail_after(15):
                await session.initialize()
            with anyio.fail_after(5), pytest.raises(MCPError) as failure:
                await session.call_tool("crash", {})
            with anyio.fail_after(5):
                while streams.process.returncode is None:
                    await anyio.sleep(0.02)
            return failure.value, streams.process

    error, process = anyio.run(scenario)
    assert "closed" in str(error).lower()
    assert process.returncode == 3
    assert "fake server crashing" in process.stderr_tail()
    assert TOKEN not in process.stderr_tail()
    assert process.describe().startswith("exited with code 3; stderr: fake server crashing")
    assert [c["tool"] for c in read_records(spec["record"]) if c["method"] == "tools/call"] == ["crash"]
    assert gone(process.pid)


def test_a_hung_server_is_killed_on_exit(tmp_path: Path) -> None:
    """A server that ignores stdin closing and SIGTERM is SIGKILLed, and its own child with it."""
    script = tmp_path / "stubborn.py"
    script.write_text(textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        sys.stdin.close()
        time.sleep(600)
    """))

    async def scenario() -> tuple[float, int]:
        started = anyio.current_time()
        async with stdio_transport(sys.executable, [str(script)], env={}) as streams:
            await anyio.sleep(0.5)
            pid = streams.process.pid
        return anyio.current_time() - started, pid

    elapsed, pid = anyio.run(scenario)
    assert elapsed < 10
    assert gone(pid)


def test_garbage_and_overlong_lines_are_errors_in_the_stream(tmp_path: Path) -> None:
    script = tmp_path / "noisy.py"
    script.write_text(textwrap.dedent("""
        import sys
        sys.stdout.write("this is not json\\n")
        sys.stdout.write('{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}' + "\\n")
        sys.stdout.write("y" * 150000 + "\\n")
        sys.stdout.write("z" * 700000 + "\\n")
        sys.stdout.write("[1, 2]\\n")
        sys.stdout.write('{"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"}' + "\\n")
        sys.stdout.flush()
    """))

    async def scenario() -> list[SessionMessage | Exception]:
        got: list[SessionMessage | Exception] = []
        async with stdio_transport(sys.executable, [str(script)], env={}, max_line_bytes=200_000) as (read, _):
            with anyio.fail_after(10):
                async for item in read:
                    got.append(item)
        return got

    items = anyio.run(scenario)
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["InvalidServerLine", "SessionMessage", "InvalidServerLine", "InvalidServerLine",
                     "InvalidServerLine", "SessionMessage"]
    assert "not a JSON-RPC message (150000 bytes)" in str(items[2])  # under the limit: parsed, and refused
    assert "over the limit" in str(items[3])  # 700 kB arrives in many reads; dropped, not kept
    assert "not a JSON-RPC message" in str(items[4])
    assert all(isinstance(item, InvalidServerLine) for item in items if not isinstance(item, SessionMessage))


def test_a_session_survives_a_garbage_line(tmp_path: Path) -> None:
    spec = stdio_spec(tmp_path)
    wrapper = tmp_path / "garbage_first.py"
    wrapper.write_text(textwrap.dedent(f"""
        import runpy, sys
        sys.stdout.write("Starting server... (not JSON)\\n")
        sys.stdout.flush()
        sys.path.insert(0, {str(REPO_ROOT)!r})
        sys.argv = ["mcp_server", *{spec["args"][2:]!r}]
        runpy.run_module("tests.fakes.mcp_server", run_name="__main__")
    """))

    async def scenario() -> str:
        async with stdio_transport(spec["command"], [str(wrapper)], env={}) as (read, write), \
                ClientSession(read, write) as session:
            with anyio.fail_after(15):
                await session.initialize()
                return text_of(await session.call_tool("search", {"query": "q"}))

    assert anyio.run(scenario) == "results for q"


def test_a_command_that_cannot_start_raises_oserror(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stdio_transport(str(tmp_path / "missing"), [], env={}):
            pass

    with pytest.raises(OSError):
        anyio.run(scenario)


def test_big_results_progress_and_a_cancelled_hang(tmp_path: Path) -> None:
    """A 3 MiB result spans many pipe reads; progress arrives; a timed-out call is cancelled upstream and the
    session goes on."""
    spec = stdio_spec(tmp_path)
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def scenario() -> tuple[int, str, str]:
        async with stdio_transport(spec["command"], spec["args"], env={}, cwd=spec["cwd"]) as (read, write), \
                ClientSession(read, write) as session:
            with anyio.fail_after(20):
                await session.initialize()
                big = text_of(await session.call_tool("big", {"size": 3 * 1024 * 1024}))
                slow = text_of(await session.call_tool("slow_progress", {"steps": 3}, progress_callback=on_progress))
                with pytest.raises(MCPError):
                    await session.call_tool("hang", {}, read_timeout_seconds=0.5)
                after = text_of(await session.call_tool("get_issue", {"number": 1}))
            return len(big), slow, after

    assert anyio.run(scenario) == (3 * 1024 * 1024, "done", "issue 1")
    assert seen == [1, 2, 3]
    assert "notifications/cancelled" in [c["method"] for c in read_records(spec["record"])]
