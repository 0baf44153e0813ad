"""The benchmark in smoke mode, so it cannot rot: every contestant starts, answers and is measured, in every mode
(chat, Anthropic Messages and OpenAI Responses, whole answers and streams).

Figures are not asserted (a shared CI machine is too noisy for that); the full run is for people. It uses the
pure-Python load generator and fake upstream, so CI needs neither wrk nor nginx. Ordered last by conftest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_runs_every_contestant_and_writes_results(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--load", "python", "--upstream", "python",
                          "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    figures = result["figures"]
    assert list(figures) == ["plain", "sse", "messages", "messages-sse", "responses", "responses-sse"]
    for mode, by_name in figures.items():
        assert set(by_name) == {"upstream", "passthrough", "passthrough-own", "agent-router"}, mode
        for name, fig in by_name.items():
            assert fig["errors"] == 0, (mode, name)
            assert fig["c32_rps"] > 0 and fig["c1_p50_ms"] > 0, (mode, name)
        router = by_name["agent-router"]
        assert router["rss_mb"] > 0 and 0 < router["cold_start_s"] < 60
        assert router["x_passthrough"]["c32_rps"] > 0 and router["x_own_passthrough"]["c32_rps"] > 0
    assert {check["target"].split(" (")[0] for check in result["targets"]} >= {
        "cold start < 1 s", "resident memory after load ≤ 100 MB", "c=32 throughput ≥ 0.9× chat"}
    assert result["meta"]["warnings"] == [], result["meta"]["warnings"]  # no answer lost its allowed tool call
    markdown = (tmp_path / "latest.md").read_text()
    assert "| agent-router |" in markdown and "pass-through" in markdown
    assert "| Messages, streaming (SSE) | agent-router |" in markdown
    assert "| Responses, streaming (SSE) | agent-router |" in markdown
    assert "agent-router" in out.stdout and "req/s c=32" in out.stdout
