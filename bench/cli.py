"""``python -m bench``: the side-by-side benchmark. ``--smoke`` is the few-second variant CI runs."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.contestants import BENCH_DIR, DIRECT, LITELLM, OWN_PASSTHROUGH, PASSTHROUGH, ROUTER, ensure_litellm
from bench.load import wrk_available
from bench.mcp_mode import MCP_MODE, run_mcp
from bench.mcp_rounds import McpPlan
from bench.modes import MODES
from bench.rounds import LOAD_CPU, Plan, run_rounds
from bench.upstream import nginx_available, start_upstream

ALL_MODES = [*MODES, MCP_MODE]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 1 round, short runs, no LiteLLM")
    parser.add_argument("--with-litellm", action="store_true",
                        help="also run LiteLLM proxy (installed once into bench/.venv-litellm)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; smoke 1); mcp too")
    parser.add_argument("--seconds", type=float,
                        help="length of each measured run (default 5; smoke 0.4, or 1 with wrk: whole seconds); "
                             "mcp too")
    parser.add_argument("--warmup", type=float,
                        help="warm-up load after each start (default 1; smoke 0.2, none with wrk)")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator (auto: wrk if installed, else the Python fallback in smoke mode)")
    parser.add_argument("--upstream", choices=("auto", "nginx", "python"), default="auto",
                        help="fake upstream (auto: nginx if installed, else the Python fallback in smoke mode)")
    parser.add_argument("--only", help="comma-separated contestants "
                                       "(upstream,passthrough,passthrough-own,agent-router,litellm); "
                                       "mcp always runs direct and agent-router")
    parser.add_argument("--modes", default=",".join(ALL_MODES),
                        help=f"comma-separated, of {', '.join(ALL_MODES)} (default all): chat, Anthropic Messages "
                             f"and OpenAI Responses, whole answers and streams; mcp: tools/call on the MCP gateway "
                             f"against the fake MCP server called directly")
    parser.add_argument("--sessions", type=int, default=8,
                        help="mcp: concurrent MCP sessions of the load driver (default 8)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results",
                        help="where latest.json and latest.md (mcp: mcp-latest.*) go (default bench/results)")
    return parser


def _pick(choice: str, available: bool, smoke: bool, tool: str) -> str:
    if choice != "auto":
        if choice != "python" and not available:
            raise SystemExit(f"bench: {tool} is not installed (Debian: apt-get install -y wrk nginx)")
        return choice
    if available:
        return "wrk" if tool == "wrk" else "nginx"
    if smoke:
        return "python"
    raise SystemExit(f"bench: the full benchmark needs {tool} (Debian: apt-get install -y wrk nginx); "
                     f"--smoke falls back to a Python load generator and upstream")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = [m for m in args.modes.split(",") if m and m not in ALL_MODES]
    if unknown:
        raise SystemExit(f"bench: unknown mode(s) {', '.join(unknown)}; known: {', '.join(ALL_MODES)}")
    modes = [m for m in args.modes.split(",") if m]
    http_modes = tuple(m for m in modes if m in MODES)
    status = _run_http(args, http_modes) if http_modes else 0
    if MCP_MODE in modes:
        status = max(status, run_mcp(_mcp_plan(args), args.smoke, args.out))
    return status


def _mcp_plan(args: argparse.Namespace) -> McpPlan:
    smoke = args.smoke
    return McpPlan(rounds=args.rounds or (1 if smoke else 3), seconds=args.seconds or (0.4 if smoke else 5.0),
                   warmup=args.warmup if args.warmup is not None else (0.2 if smoke else 1.0),
                   concurrency=args.sessions, workdir=Path(tempfile.mkdtemp(prefix="agent-router-bench-mcp-")))


def _run_http(args: argparse.Namespace, modes: tuple[str, ...]) -> int:
    """The HTTP modes (chat, Messages, Responses): wrk or the Python generator against every contestant."""
    smoke = args.smoke
    load_tool = _pick(args.load, wrk_available(), smoke, "wrk")
    upstream_kind = _pick(args.upstream, nginx_available(), smoke, "nginx")
    contestants = [DIRECT, PASSTHROUGH, OWN_PASSTHROUGH, ROUTER]
    if args.with_litellm and not smoke:
        contestants.append(LITELLM)
    if args.only:
        contestants = [c for c in args.only.split(",") if c]
    if LITELLM in contestants:
        ensure_litellm()
    plan = Plan(contestants=tuple(contestants), rounds=args.rounds or (1 if smoke else 3),
                seconds=args.seconds or (5.0 if not smoke else 1.0 if load_tool == "wrk" else 0.4),
                warmup=args.warmup if args.warmup is not None else (1.0 if not smoke else 0 if load_tool == "wrk"
                                                                     else 0.2),
                load_tool=load_tool, workdir=Path(tempfile.mkdtemp(prefix="agent-router-bench-")))
    method = (f"{plan.rounds} interleaved round(s); per contestant and mode a fresh start, {plan.warmup:g} s "
              f"warm-up, then {plan.seconds:g} s at concurrency 1 and {plan.seconds:g} s at concurrency 32; "
              f"servers one process/one worker on CPU 0, load ({load_tool}) and fake upstream ({upstream_kind}) "
              f"on CPU 1; medians over rounds; added latency = contestant minus the upstream called directly "
              f"in the same round.")
    print(f"bench: {method}", flush=True)
    load_before = os.getloadavg()
    began = time.perf_counter()
    upstream = start_upstream(upstream_kind, plan.workdir, LOAD_CPU)
    try:
        samples = run_rounds(plan, upstream, modes)
    finally:
        upstream.stop()
    figs = report.figures(samples)
    checks = report.target_checks(figs)
    load_after = os.getloadavg()
    warnings = sorted({s["warning"] for by_name in samples.values()
                       for rounds in by_name.values() for s in rounds if s.get("warning")})
    notes = (f"machine {platform.node()} ({os.cpu_count()} CPUs, Python {platform.python_version()}); "
             f"1-minute load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
             f"(other processes share the machine: compare ratios, not absolute figures); "
             f"the floor's own c=32 throughput is the fake upstream's, measured while sharing CPU 1 with the "
             f"load generator; run took {time.perf_counter() - began:.0f} s."
             + "".join(f" WARNING: {w}." for w in warnings))
    meta = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "method": method, "notes": notes,
            "smoke": smoke, "load_tool": load_tool, "upstream": upstream_kind, "rounds": plan.rounds,
            "seconds": plan.seconds, "contestants": contestants, "modes": list(modes), "warnings": warnings}
    print()
    print(report.text_table(figs))
    for check in checks:
        verdict = "n/a" if check["met"] is None else "met" if check["met"] else "MISSED"
        print(f"  target {check['target']}: {check['shown']} -> {verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps({"meta": meta, "figures": figs, "targets": checks,
                                                      "samples": samples}, indent=2))
    (args.out / "latest.md").write_text(report.markdown(figs, checks, meta))
    for warning in warnings:
        print(f"  WARNING: {warning}")
    print(f"\nwrote {args.out / 'latest.json'} and {args.out / 'latest.md'}")
    shutil.rmtree(plan.workdir, ignore_errors=True)
    errors = sum(fig["errors"] for by_name in figs.values() for fig in by_name.values())
    if errors:
        print(f"bench: {errors} failed requests during the runs (see the errors column)", file=sys.stderr)
        return 1
    return 0
