"""``python -m bench --modes mcp``: what agent-router adds to an MCP ``tools/call``, end to end.

Runs the rounds of :mod:`bench.mcp_rounds`, prints the table of :mod:`bench.mcp_report` and writes
``mcp-latest.json`` and ``mcp-latest.md`` beside the HTTP modes' ``latest.*`` (each run keeps the other's files).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import mcp_report
from bench.mcp_rounds import McpPlan, run_rounds

MCP_MODE = "mcp"


def method(plan: McpPlan) -> str:
    return (f"{plan.rounds} round(s), direct then agent-router in each; per contestant {plan.warmup:g} s warm-up "
            f"then {plan.seconds:g} s with 1 MCP session and {plan.seconds:g} s with {plan.concurrency}, each "
            f"session initialized once, then calling `echo` (a ~200-byte argument object, returned) in a loop; "
            f"the driver (official mcp client SDK) and the fake MCP server (the SDK's MCPServer, Streamable HTTP, "
            f"SSE answers) on CPU 1, agent-router (`serve`, one process, `/mcp/bench`, a role allowing `bench:*` "
            f"under an argument condition, SQLite ledger) on CPU 0, restarted each round; medians over rounds; "
            f"added latency = through agent-router minus direct in the same round.")


def run_mcp(plan: McpPlan, smoke: bool, out: Path) -> int:
    """Measure, print, write the files; 1 when a call failed or a router call did not reach the fake."""
    print(f"bench mcp: {method(plan)}", flush=True)
    load_before = os.getloadavg()
    began = time.perf_counter()
    samples = run_rounds(plan)  # on failure the workdir stays, with the servers' logs
    shutil.rmtree(plan.workdir, ignore_errors=True)
    figs = mcp_report.figures(samples)
    notes = (f"machine {platform.node()} ({os.cpu_count()} CPUs, Python {platform.python_version()}); 1-minute "
             f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (compare the ratio and "
             f"the added latency, not absolute figures); run took {time.perf_counter() - began:.0f} s.")
    meta = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "method": method(plan), "notes": notes,
            "smoke": smoke, "rounds": plan.rounds, "seconds": plan.seconds, "warmup": plan.warmup,
            "concurrency": plan.concurrency}
    print()
    print(mcp_report.text_table(figs, plan.concurrency))
    out.mkdir(parents=True, exist_ok=True)
    (out / "mcp-latest.json").write_text(json.dumps({"meta": meta, "figures": figs, "samples": samples}, indent=2))
    (out / "mcp-latest.md").write_text(mcp_report.markdown(figs, meta))
    print(f"\nwrote {out / 'mcp-latest.json'} and {out / 'mcp-latest.md'}")
    errors = sum(fig["errors"] for fig in figs.values())
    lost = sum(max(0, fig["calls"] - fig["reached_upstream"]) for fig in figs.values())
    if errors or lost:
        print(f"bench mcp: {errors} failed calls, {lost} calls that never reached the fake MCP server",
              file=sys.stderr)
        return 1
    return 0
