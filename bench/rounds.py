"""One benchmark run: rounds of interleaved contestants (A B C A B C ...), each measured the same way.

Per contestant and mode (:mod:`bench.modes`: chat, Messages or Responses, whole or streamed): start it (timing the cold
start), check one answer is right, warm up, then concurrency 1 and concurrency 32 for ``seconds`` each, then
read its resident memory, then stop it.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.contestants import AGENT_KEYS, DIRECT, ROUTER, start_contestant
from bench.load import run_load
from bench.modes import MODES, Mode
from bench.procs import Server

SERVER_CPU, LOAD_CPU = 0, 1


@dataclass(frozen=True)
class Plan:
    contestants: tuple[str, ...]
    rounds: int
    seconds: float
    warmup: float
    load_tool: str  # wrk | python
    workdir: Path


@dataclass(frozen=True)
class Sample:
    """One contestant, one mode, one round."""

    round: int
    c1_p50_ms: float
    c1_p99_ms: float
    c32_rps: float
    c32_p99_ms: float
    rss_mb: float | None
    cold_start_s: float | None
    errors: int
    warning: str | None = None


def _keys(name: str) -> list[str]:
    return AGENT_KEYS if name == ROUTER else []


def check_answer(port: int, path: str, mode: Mode, keys: list[str]) -> str | None:
    """One request by hand: a 200 whose body is a whole answer (a stream must end with its last event).

    Returns a warning when the answer lost its (allowed) tool call: the figures still count, but say so.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=mode.request(), headers=mode.headers(keys[0] if keys else None))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200 or mode.whole_marker not in body:
        raise RuntimeError(f"unexpected answer on port {port} {path} ({mode.name}): {resp.status} {body[:400]!r}")
    if (mode.call_marker or mode.tool_name) not in body:
        return f"the {mode.title} answer lost its allowed {mode.tool_name.decode()} tool call"
    return None


def measure(plan: Plan, name: str, mode: Mode, upstream: Server, round_: int, bodies: dict[str, Path]) -> Sample:
    root = f"http://127.0.0.1:{upstream.port}/{mode.name}"
    server: Server | None = None
    if name == DIRECT:
        port, path = upstream.port, f"/{mode.name}{mode.path}"
    else:
        server = start_contestant(name, root, plan.workdir, SERVER_CPU)
        port, path = server.port, mode.path
    try:
        keys = _keys(name)
        warning = check_answer(port, path, mode, keys)
        url = f"http://127.0.0.1:{port}{path}"
        body = bodies[mode.name]
        if plan.warmup > 0:
            run_load(plan.load_tool, url, body, keys, 32, plan.warmup, LOAD_CPU, mode.wire)
        c1 = run_load(plan.load_tool, url, body, keys, 1, plan.seconds, LOAD_CPU, mode.wire)
        c32 = run_load(plan.load_tool, url, body, keys, 32, plan.seconds, LOAD_CPU, mode.wire)
        rss = server.rss_bytes() / 2**20 if server else None
        return Sample(round_, c1.p50_ms, c1.p99_ms, c32.rps, c32.p99_ms, rss,
                      server.ready_seconds if server else None, c1.errors + c32.errors,
                      f"{name}: {warning}" if warning else None)
    finally:
        if server is not None:
            server.stop()


def run_rounds(plan: Plan, upstream: Server, modes: tuple[str, ...]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """samples[mode][contestant] = one dict per round."""
    bodies = {}
    for mode in modes:
        bodies[mode] = plan.workdir / f"request-{mode}.json"
        bodies[mode].write_bytes(MODES[mode].request())
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {m: {c: [] for c in plan.contestants} for m in modes}
    for round_ in range(1, plan.rounds + 1):
        for mode in modes:
            for name in plan.contestants:
                began = time.perf_counter()
                sample = measure(plan, name, MODES[mode], upstream, round_, bodies)
                samples[mode][name].append(asdict(sample))
                print(f"  round {round_} {mode:12} {name:15} c1 p50 {sample.c1_p50_ms:7.3f} ms  "
                      f"c32 {sample.c32_rps:8.0f} req/s p99 {sample.c32_p99_ms:7.2f} ms"
                      + (f"  rss {sample.rss_mb:5.0f} MB  start {sample.cold_start_s:5.2f} s"
                         if sample.rss_mb is not None and sample.cold_start_s is not None else "")
                      + (f"  ERRORS {sample.errors}" if sample.errors else "")
                      + (f"  WARNING {sample.warning}" if sample.warning else "")
                      + f"  ({time.perf_counter() - began:.1f} s)", flush=True)
    return samples
