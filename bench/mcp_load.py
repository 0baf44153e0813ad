"""The MCP load driver: C sessions on the official client SDK, each calling ``echo`` in a loop for a fixed time.

wrk cannot drive MCP: a session is opened by ``initialize`` (its ``Mcp-Session-Id`` is sent on every later
request) and each call may be answered as an SSE stream. So the driver is what an agent runs: a
``ClientSession`` over ``streamable_http_client`` per session, an ``Authorization`` header on its httpx2 client
when a key is given (read from ``BENCH_MCP_KEY``, so it never shows in a process list). Every session
initializes and makes a first call (timed as its setup); then all start together, warm up, and are measured
for ``seconds``. A call counts when it started inside the window and came back as the payload it sent;
anything else is an error. The whole run is bounded by a deadline. Prints one JSON line: ``calls``,
``seconds``, ``calls_per_s``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``errors``, ``sessions``, ``setup_p50_ms``.

Run: ``python -m bench.mcp_load --url http://127.0.0.1:9100/mcp -c 8 -d 5``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

KEY_ENV = "BENCH_MCP_KEY"
TOOL = "echo"
PAYLOAD: dict[str, Any] = {
    "command": "ls -la src/router/mcp",
    "cwd": "/work/project",
    "env": {"LANG": "C.UTF-8", "TERM": "dumb"},
    "timeout_s": 30,
    "note": "list the gateway's modules before editing the tool-call handler",
    "tags": ["bench", "mcp", "read-only"],
}
"""The ~200-byte argument object every call sends (as ``{"payload": ...}``) and expects back. Its ``command``
is checked by the router's argument condition and passes it."""
CALL_TIMEOUT = 10.0
MAX_ERRORS_PER_SESSION = 100
"""A session that keeps failing stops early rather than spinning until the window closes."""


@dataclass
class Window:
    """Shared by every session: when measuring starts and ends, and what each call took."""

    started: anyio.Event = field(default_factory=anyio.Event)
    measure_from: float = 0.0
    until: float = 0.0
    latencies: list[float] = field(default_factory=list)
    setups: list[float] = field(default_factory=list)
    """Per session: ``initialize`` and a first call, before the clock starts (the client lists the tools on a
    first call, the router opens its upstream session)."""
    last_done: float = 0.0
    errors: int = 0
    ready: int = 0


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _call_once(session: ClientSession) -> bool:
    result = await session.call_tool(TOOL, {"payload": PAYLOAD}, read_timeout_seconds=CALL_TIMEOUT)
    return not result.is_error and result.structured_content == PAYLOAD


async def _session(url: str, key: str | None, window: Window) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    errors = 0
    async with (httpx2.AsyncClient(headers=headers, timeout=CALL_TIMEOUT) as http,
                streamable_http_client(url, http_client=http) as (read, write),
                ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as session):
        opened = time.perf_counter()
        await session.initialize()
        if not await _call_once(session):
            raise RuntimeError("the first call of a session failed")
        window.setups.append(time.perf_counter() - opened)
        window.ready += 1
        await window.started.wait()
        while (began := time.perf_counter()) < window.until and errors < MAX_ERRORS_PER_SESSION:
            try:
                ok = await _call_once(session)
            except Exception:  # any failed call is counted; the run goes on
                ok = False
            done = time.perf_counter()
            if began < window.measure_from:
                continue
            if ok:
                window.latencies.append(done - began)
            else:
                errors += 1
                window.errors += 1
            window.last_done = max(window.last_done, done)


async def run(url: str, key: str | None, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Open ``concurrency`` sessions, then warm up for ``warmup`` s and measure for ``seconds`` s."""
    window = Window()
    with anyio.fail_after(warmup + seconds + 60):
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(_session, url, key, window)
            while window.ready < concurrency:
                await anyio.sleep(0.005)
            window.measure_from = time.perf_counter() + warmup
            window.until = window.measure_from + seconds
            window.started.set()
    latencies = sorted(window.latencies)
    elapsed = max(window.last_done - window.measure_from, 1e-9)
    return {"calls": len(latencies), "seconds": elapsed, "calls_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.50) * 1000, "p95_ms": percentile(latencies, 0.95) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "errors": window.errors, "sessions": concurrency,
            "setup_p50_ms": percentile(sorted(window.setups), 0.50) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the Streamable HTTP endpoint")
    parser.add_argument("-c", type=int, default=8, help="concurrent sessions")
    parser.add_argument("-d", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    args = parser.parse_args()
    try:
        import uvloop  # noqa: F401 - the driver's own cost should stay small beside what it measures

        options = {"use_uvloop": True}
    except ImportError:
        options = {}
    result = anyio.run(run, args.url, os.environ.get(KEY_ENV) or None, args.c, args.d, args.warmup,
                       backend_options=options)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
