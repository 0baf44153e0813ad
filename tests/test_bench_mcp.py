"""The benchmark's MCP mode, so it cannot rot: a short run really completes calls directly and through the router,
the router's calls are allowed ones that reached the fake MCP server, and the report carries the figures.

The bench config's argument condition really runs: a call it matches is refused by the router and never reaches
the fake, so the figures measure a call that went through the whole decision path. Figures are not asserted (a
shared machine is too noisy); the full run is for people.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from bench import mcp_report
from bench.mcp_load import PAYLOAD, percentile
from bench.mcp_rounds import AGENT_KEY, DIRECT, SERVER, start_fake, start_router, upstream_calls
from bench.procs import Server

ROOT = Path(__file__).resolve().parent.parent
ROUTER = "agent-router"


@pytest.mark.timeout(150)
def test_a_short_mcp_run_calls_directly_and_through_the_router(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--modes", "mcp", "--smoke", "--seconds", "1",
                          "--sessions", "4", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert not (tmp_path / "latest.json").exists()  # the HTTP modes did not run, nor overwrite their files
    result = json.loads((tmp_path / "mcp-latest.json").read_text())
    figures = result["figures"]
    assert set(figures) == {DIRECT, ROUTER}
    for name, fig in figures.items():
        assert fig["errors"] == 0, name
        assert fig["calls"] > 0 and fig["cn_calls_per_s"] > 0 and fig["c1_p50_ms"] > 0, name
        assert 0 < fig["cn_p50_ms"] <= fig["cn_p95_ms"] <= fig["cn_p99_ms"], name
    router = figures[ROUTER]
    # Every call the driver counted came back as the payload it sent, and the fake served at least as many.
    assert router["reached_upstream"] >= router["calls"]
    assert router["added_c1_p50_ms"] is not None and router["x_direct"] > 0
    assert router["rss_mb"] > 0 and router["cold_start_s"] > 0 and router["cpu_ms_per_call"] > 0
    assert result["meta"]["concurrency"] == 4 and result["meta"]["seconds"] == 1
    markdown = (tmp_path / "mcp-latest.md").read_text()
    assert "| direct |" in markdown and "| agent-router |" in markdown and "calls/s c=4" in markdown
    assert "agent-router adds" in markdown
    assert "MCP tools/call: direct" in out.stdout and "calls/s ×direct" in out.stdout
    assert AGENT_KEY not in out.stdout + out.stderr + markdown


@pytest.fixture
def bench_router(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    fake = start_fake(tmp_path, None)
    try:
        router = start_router(fake.port, tmp_path, None)
        try:
            yield fake, router
        finally:
            router.stop()
    finally:
        fake.stop()


async def _call(url: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    with anyio.fail_after(30):
        async with (httpx2.AsyncClient(headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10) as http,
                    streamable_http_client(url, http_client=http) as (read, write),
                    ClientSession(read, write) as session):
            await session.initialize()
            result = await session.call_tool("echo", arguments)
            return bool(result.is_error), result.structured_content or result.content[0].model_dump()


@pytest.mark.timeout(90)
def test_the_bench_config_decides_every_call_on_its_arguments(bench_router: tuple[Server, Server]) -> None:
    fake, router = bench_router
    url = f"http://127.0.0.1:{router.port}/mcp/{SERVER}"
    before = upstream_calls(fake.port)
    refused, answer = anyio.run(_call, url, {"payload": {**PAYLOAD, "command": "sudo rm -rf /"}})
    assert refused and "destructive or networked shell commands" in answer["text"]
    assert upstream_calls(fake.port) == before  # the refused call never reached the fake
    refused, answer = anyio.run(_call, url, {"payload": PAYLOAD})
    assert not refused and answer == PAYLOAD
    assert upstream_calls(fake.port) == before + 1


def _sample(round_: int, c1_p50: float, cn_rps: float, cn_p50: float) -> dict[str, Any]:
    run = {"calls": 10, "calls_per_s": cn_rps, "p50_ms": cn_p50, "p95_ms": cn_p50 * 2, "p99_ms": cn_p50 * 3,
           "errors": 0, "reached_upstream": 10, "setup_p50_ms": 5.0}
    return {"round": round_, "c1": {**run, "p50_ms": c1_p50}, "cn": run, "rss_mb": None, "cold_start_s": None,
            "cpu_ms_per_call": None}


def test_added_latency_is_taken_per_round_against_direct() -> None:
    samples = {DIRECT: [_sample(1, 2.0, 300.0, 20.0), _sample(2, 4.0, 200.0, 30.0), _sample(3, 3.0, 250.0, 25.0)],
               ROUTER: [_sample(1, 3.0, 150.0, 40.0), _sample(2, 5.5, 100.0, 60.0), _sample(3, 5.0, 125.0, 50.0)]}
    figs = mcp_report.figures(samples)
    assert figs[ROUTER]["added_c1_p50_ms"] == 1.5  # median of 1.0, 1.5, 2.0 (not 5.0 - 3.0)
    assert figs[ROUTER]["added_cn_p50_ms"] == 25.0
    assert figs[ROUTER]["x_direct"] == 0.5
    text = mcp_report.text_table(figs, 8)
    assert "calls/s c=8" in text and "0.50×" in text and "adds 1.50 ms" in text


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50.0, 95.0, 99.0)
    assert percentile([7.0], 0.99) == 7.0 and percentile([], 0.5) == 0.0
