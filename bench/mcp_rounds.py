"""The MCP mode's runs: ``tools/call`` against the fake MCP server directly, then through agent-router.

One fake server (:mod:`bench.mcp_upstream`) serves the whole run, pinned with the load driver to the load CPU,
as the HTTP modes' fake upstream is. Per round: the driver against the fake at concurrency 1 (the latency a
call costs) and at ``concurrency`` (throughput and its percentiles); then a fresh ``agent-router serve`` with
:file:`mcp_config.yaml`, pinned to the server CPU, and the same two runs through
``/mcp/bench`` with the agent's key. The fake's own call counter is read around every run, so a sample says how
many calls really reached it (a refused call never does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.contestants import BENCH_DIR, ROOT, ROUTER
from bench.mcp_load import KEY_ENV
from bench.procs import Server, free_port, pinned
from bench.rounds import LOAD_CPU, SERVER_CPU

CONFIG = BENCH_DIR / "mcp_config.yaml"
AGENT_KEY = "bench-key-tools-1"
"""The plaintext key of agent ``tools-1`` in :file:`mcp_config.yaml` (a bench-only key)."""
SERVER = "bench"
DIRECT = "direct"
"""The fake MCP server called by the driver itself, no router in between."""


@dataclass(frozen=True)
class McpPlan:
    rounds: int
    seconds: float
    warmup: float
    concurrency: int
    workdir: Path


@dataclass(frozen=True)
class McpRun:
    """One driver run: what it measured and how many calls the fake served meanwhile."""

    calls: int
    calls_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    reached_upstream: int
    setup_p50_ms: float
    """A session's ``initialize`` and first call (unmeasured otherwise)."""


@dataclass(frozen=True)
class McpSample:
    """One contestant, one round: a run at concurrency 1 and one at the plan's concurrency."""

    round: int
    c1: McpRun
    cn: McpRun
    rss_mb: float | None = None
    cold_start_s: float | None = None
    cpu_ms_per_call: float | None = None
    """The router's CPU time over its run at the plan's concurrency (session setup and warm-up included), per
    call that reached the fake in it."""


def upstream_calls(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/calls", timeout=5) as answer:
        return int(json.loads(answer.read())["calls"])


def start_fake(workdir: Path, cpu: int | None) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.mcp_upstream", "--port", str(port)]
    return Server("fake MCP server", pinned(cpu, argv), port, "/readyz", env={"PYTHONPATH": str(ROOT)},
                  log_path=workdir / "mcp-upstream.log").start(timeout=30)


def start_router(fake_port: int, workdir: Path, cpu: int | None) -> Server:
    port = free_port()
    rundir = workdir / f"mcp-router-{port}"
    rundir.mkdir()
    argv = [sys.executable, "-m", "router", "serve", "--config", str(CONFIG), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    env = {"BENCH_MCP_URL": f"http://127.0.0.1:{fake_port}/mcp", "PYTHONPATH": str(ROOT),
           "AGENT_ROUTER_DATABASE_URL": f"sqlite:///{rundir / 'ledger.db'}"}
    return Server(ROUTER, pinned(cpu, argv), port, "/readyz", env=env,
                  log_path=workdir / "mcp-router.log").start(timeout=60)


def drive(url: str, key: str | None, concurrency: int, seconds: float, warmup: float, fake_port: int) -> McpRun:
    """One run of :mod:`bench.mcp_load` in its own process on the load CPU."""
    before = upstream_calls(fake_port)
    argv = [sys.executable, "-m", "bench.mcp_load", "--url", url, "-c", str(concurrency), "-d", str(seconds),
            "--warmup", str(warmup)]
    env = {"PYTHONPATH": str(ROOT), **({KEY_ENV: key} if key else {})}
    out = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, cwd=ROOT,
                         env={**_base_env(), **env}, timeout=warmup + seconds + 90)
    if out.returncode != 0:
        raise RuntimeError(f"MCP load driver failed ({out.returncode}): {out.stderr[-800:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return McpRun(data["calls"], data["calls_per_s"], data["p50_ms"], data["p95_ms"], data["p99_ms"],
                  data["errors"], upstream_calls(fake_port) - before, data["setup_p50_ms"])


def _base_env() -> dict[str, str]:
    """This process's environment without a key of its own: only the router's runs send one."""
    return {name: value for name, value in os.environ.items() if name != KEY_ENV}


def measure(plan: McpPlan, name: str, fake: Server, round_: int) -> McpSample:
    router: Server | None = None
    if name == DIRECT:
        url, key = f"http://127.0.0.1:{fake.port}/mcp", None
    else:
        router = start_router(fake.port, plan.workdir, SERVER_CPU)
        url, key = f"http://127.0.0.1:{router.port}/mcp/{SERVER}", AGENT_KEY
    try:
        c1 = drive(url, key, 1, plan.seconds, plan.warmup, fake.port)
        if not c1.calls or c1.reached_upstream < c1.calls:
            raise RuntimeError(f"{name}: calls did not come back or did not reach the fake ({c1}); "
                               f"see the logs in {plan.workdir}")
        cpu_before = router.cpu_seconds() if router else 0.0
        cn = drive(url, key, plan.concurrency, plan.seconds, plan.warmup, fake.port)
        if router is None:
            return McpSample(round_, c1, cn)
        cpu = (router.cpu_seconds() - cpu_before) * 1000 / max(cn.reached_upstream, 1)
        return McpSample(round_, c1, cn, router.rss_bytes() / 2**20, router.ready_seconds, cpu)
    finally:
        if router is not None:
            router.stop()


def run_rounds(plan: McpPlan) -> dict[str, list[dict[str, Any]]]:
    """samples[contestant] = one dict per round, direct first in each round."""
    samples: dict[str, list[dict[str, Any]]] = {DIRECT: [], ROUTER: []}
    fake = start_fake(plan.workdir, LOAD_CPU)
    try:
        for round_ in range(1, plan.rounds + 1):
            for name in (DIRECT, ROUTER):
                sample = measure(plan, name, fake, round_)
                samples[name].append(asdict(sample))
                print(f"  round {round_} mcp          {name:15} c1 p50 {sample.c1.p50_ms:7.3f} ms  "
                      f"c{plan.concurrency} {sample.cn.calls_per_s:6.0f} calls/s p50 {sample.cn.p50_ms:6.2f} ms "
                      f"p99 {sample.cn.p99_ms:6.2f} ms"
                      + (f"  ERRORS {sample.c1.errors + sample.cn.errors}"
                         if sample.c1.errors + sample.cn.errors else ""), flush=True)
    finally:
        fake.stop()
    return samples
