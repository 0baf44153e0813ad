"""The MCP mode's figures: medians over rounds, what agent-router adds to a ``tools/call``, as text and Markdown.

Added latency is taken per round against the direct run of the same round (the machine drifts between rounds),
then the median over rounds; the throughput ratio likewise compares medians of calls/s.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from bench.contestants import ROUTER
from bench.mcp_rounds import DIRECT

FIELDS = ("calls_per_s", "p50_ms", "p95_ms", "p99_ms", "setup_p50_ms")


def _med(values: list[float]) -> float | None:
    return median(values) if values else None


def _added(rounds: list[dict[str, Any]], floor: dict[int, dict[str, Any]], run: str, key: str) -> float | None:
    return _med([s[run][key] - floor[s["round"]][run][key] for s in rounds if s["round"] in floor])


def figures(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """figures[contestant]: ``c1_*`` (one session) and ``cn_*`` (the plan's sessions) medians, calls and errors;
    agent-router's also ``added_*`` against direct and ``x_direct`` (its calls/s over direct's)."""
    out: dict[str, dict[str, Any]] = {}
    floor = {s["round"]: s for s in samples.get(DIRECT, [])}
    for name, rounds in samples.items():
        fig: dict[str, Any] = {"rounds": len(rounds)}
        for run in ("c1", "cn"):
            for key in FIELDS:
                fig[f"{run}_{key}"] = _med([s[run][key] for s in rounds])
        fig["calls"] = sum(s[run]["calls"] for s in rounds for run in ("c1", "cn"))
        fig["reached_upstream"] = sum(s[run]["reached_upstream"] for s in rounds for run in ("c1", "cn"))
        fig["errors"] = sum(s[run]["errors"] for s in rounds for run in ("c1", "cn"))
        fig["rss_mb"] = _med([s["rss_mb"] for s in rounds if s.get("rss_mb") is not None])
        fig["cold_start_s"] = _med([s["cold_start_s"] for s in rounds if s.get("cold_start_s") is not None])
        fig["cpu_ms_per_call"] = _med([s["cpu_ms_per_call"] for s in rounds if s.get("cpu_ms_per_call") is not None])
        if name != DIRECT and floor:
            for run in ("c1", "cn"):
                for key in ("p50_ms", "p99_ms"):
                    fig[f"added_{run}_{key}"] = _added(rounds, floor, run, key)
            direct = out.get(DIRECT) or {}
            fig["x_direct"] = _ratio(fig["cn_calls_per_s"], direct.get("cn_calls_per_s"))
        out[name] = fig
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def header(concurrency: int) -> list[str]:
    c = f"c={concurrency}"
    return ["contestant", "p50 c=1 (ms)", "added p50 c=1 (ms)", f"calls/s {c}", f"p50 {c} (ms)", f"p95 {c} (ms)",
            f"p99 {c} (ms)", f"added p50 {c} (ms)", "calls/s ×direct", f"session setup p50 {c} (ms)",
            "router CPU per call (ms)", "RSS (MB)", "cold start (s)", "errors"]


def rows(figs: dict[str, dict[str, Any]]) -> list[list[str]]:
    table = []
    for name, fig in figs.items():
        ratio = fig.get("x_direct")
        table.append([name, _f(fig["c1_p50_ms"], ".2f"),
                      _f(fig.get("added_c1_p50_ms"), ".2f"), _f(fig["cn_calls_per_s"], ".0f"),
                      _f(fig["cn_p50_ms"], ".2f"), _f(fig["cn_p95_ms"], ".2f"), _f(fig["cn_p99_ms"], ".2f"),
                      _f(fig.get("added_cn_p50_ms"), ".2f"), "–" if ratio is None else f"{ratio:.2f}×",
                      _f(fig["cn_setup_p50_ms"], ".1f"), _f(fig["cpu_ms_per_call"], ".2f"),
                      _f(fig["rss_mb"], ".0f"), _f(fig["cold_start_s"], ".2f"), str(fig["errors"])])
    return table


def summary(figs: dict[str, dict[str, Any]], concurrency: int) -> str:
    """One sentence: what the router adds to a call."""
    direct, router = figs.get(DIRECT), figs.get(ROUTER)
    if not direct or not router:
        return "MCP tools/call: not measured against both contestants."
    ratio = router.get("x_direct")
    return (f"MCP tools/call: direct {_f(direct['cn_calls_per_s'], '.0f')} calls/s, through agent-router "
            f"{_f(router['cn_calls_per_s'], '.0f')} calls/s at {concurrency} sessions "
            f"({'–' if ratio is None else f'{ratio:.2f}×'}); agent-router adds "
            f"{_f(router.get('added_c1_p50_ms'), '.2f')} ms to a call's p50 at 1 session and "
            f"{_f(router.get('added_cn_p50_ms'), '.2f')} ms at {concurrency}, using "
            f"{_f(router.get('cpu_ms_per_call'), '.2f')} ms of its CPU per call.")


def text_table(figs: dict[str, dict[str, Any]], concurrency: int) -> str:
    table = [header(concurrency), *rows(figs)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", summary(figs, concurrency)])


def markdown(figs: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    cols = header(meta["concurrency"])
    out = [f"# agent-router benchmark: MCP tools/call ({meta['when']})", "", f"Method: {meta['method']}", "",
           "| " + " | ".join(cols) + " |", "|---|" + "|".join(["---:"] * (len(cols) - 1)) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows(figs)]
    out += ["", summary(figs, meta["concurrency"]), "", "Notes: " + meta["notes"], ""]
    return "\n".join(out)
