"""Turn per-round samples into medians, ratios and target checks; render them as a table, Markdown and JSON."""

from __future__ import annotations

from statistics import median
from typing import Any

from bench.contestants import DIRECT, LITELLM, OWN_PASSTHROUGH, PASSTHROUGH, ROUTER
from bench.modes import MESSAGES, MODES

MODE_TITLES = {name: mode.title for name, mode in MODES.items()}
TARGETS = {"throughput_x_passthrough": 0.6, "added_p50_ms": 0.4, "rss_mb": 100.0, "cold_start_s": 1.0,
           "messages_x_chat": 0.9, "responses_x_chat": 0.9}
"""``messages_x_chat`` / ``responses_x_chat``: issues 12 and 13 ask that Messages and Responses cost about what chat
costs; the router's c=32 throughput on such a mode against its chat twin in the same run, 0.9× or better counting as
"about"."""


def _med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return median(present) if present else None


def _added(rounds: list[dict[str, Any]], floor: dict[int, dict[str, Any]], key: str) -> float | None:
    """Median over rounds of (this contestant - the floor in the same round)."""
    if not floor:
        return None
    return _med([s[key] - floor[s["round"]][key] for s in rounds if s["round"] in floor])


def figures(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """figures[mode][contestant]: medians over rounds; added latency is taken against the same round's floor."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for mode, by_name in samples.items():
        floor = {s["round"]: s for s in by_name.get(DIRECT, [])}
        out[mode] = {}
        for name, rounds in by_name.items():
            floor_of = {} if name == DIRECT else floor
            out[mode][name] = {
                "c1_p50_ms": _med([s["c1_p50_ms"] for s in rounds]),
                "c1_p99_ms": _med([s["c1_p99_ms"] for s in rounds]),
                "added_p50_ms": _added(rounds, floor_of, "c1_p50_ms"),
                "added_p99_ms": _added(rounds, floor_of, "c1_p99_ms"),
                "c32_rps": _med([s["c32_rps"] for s in rounds]),
                "c32_p99_ms": _med([s["c32_p99_ms"] for s in rounds]),
                "rss_mb": _med([s["rss_mb"] for s in rounds]),
                "cold_start_s": _med([s["cold_start_s"] for s in rounds]),
                "errors": sum(s["errors"] for s in rounds),
                "rounds": len(rounds),
            }
        for name, fig in out[mode].items():
            for other, label in ((PASSTHROUGH, "x_passthrough"), (OWN_PASSTHROUGH, "x_own_passthrough"),
                                 (LITELLM, "x_litellm")):
                ref = out[mode].get(other)
                if ref is None or other == name:
                    continue
                fig[label] = {key: _ratio(fig[key], ref[key]) for key in
                              ("added_p50_ms", "added_p99_ms", "c32_rps", "c32_p99_ms", "rss_mb", "cold_start_s")}
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def target_checks(figs: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for mode, by_name in figs.items():
        router = by_name.get(ROUTER)
        if router is None:
            continue
        ratio = (router.get("x_passthrough") or {}).get("c32_rps")
        checks.append(_check(f"c=32 throughput ≥ {TARGETS['throughput_x_passthrough']}× pass-through "
                             f"({MODE_TITLES[mode]})", ratio, TARGETS["throughput_x_passthrough"], higher=True,
                             unit="×"))
        checks.append(_check(f"added p50 at c=1 ≤ {TARGETS['added_p50_ms']} ms ({MODE_TITLES[mode]})",
                             router["added_p50_ms"], TARGETS["added_p50_ms"], higher=False, unit=" ms"))
    for mode, by_name in figs.items():
        twin = MODES[mode].chat_twin
        if twin is None or ROUTER not in by_name or ROUTER not in figs.get(twin, {}):
            continue
        ratio = _ratio(by_name[ROUTER]["c32_rps"], figs[twin][ROUTER]["c32_rps"])
        target = TARGETS["messages_x_chat" if MODES[mode].wire == MESSAGES else "responses_x_chat"]
        check = _check(f"c=32 throughput ≥ {target}× chat ({MODE_TITLES[mode]} against {MODE_TITLES[twin]})",
                       ratio, target, higher=True, unit="×")
        checks.append({**check, "mode": mode, "chat_twin": twin, "goal": target})
    routers = [by_name[ROUTER] for by_name in figs.values() if ROUTER in by_name]
    if routers:
        rss = max((r["rss_mb"] for r in routers if r["rss_mb"] is not None), default=None)
        cold = _med([r["cold_start_s"] for r in routers])
        checks.append(_check(f"resident memory after load ≤ {TARGETS['rss_mb']:g} MB", rss, TARGETS["rss_mb"],
                             higher=False, unit=" MB"))
        checks.append(_check(f"cold start < {TARGETS['cold_start_s']:g} s", cold, TARGETS["cold_start_s"],
                             higher=False, unit=" s", strict=True))
    return checks


def _check(what: str, value: float | None, target: float, *, higher: bool, unit: str,
           strict: bool = False) -> dict[str, Any]:
    if value is None:
        met = None
    elif higher:
        met = value >= target
    else:
        met = value < target if strict else value <= target
    return {"target": what, "value": value, "unit": unit.strip(), "met": met,
            "shown": "n/a" if value is None else f"{value:.3g}{unit}"}


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _x(fig: dict[str, Any], ref: str, key: str) -> str:
    value = (fig.get(ref) or {}).get(key)
    return "–" if value is None else f"{value:.2f}×"


HEADER = ["mode", "contestant", "added p50 c=1 (ms)", "added p99 c=1 (ms)", "req/s c=32", "p99 c=32 (ms)",
          "RSS (MB)", "cold start (s)", "req/s ×pass-through", "req/s ×own pass-through", "req/s ×LiteLLM",
          "added p50 ×pass-through", "errors"]


def rows(figs: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    table = []
    for mode, by_name in figs.items():
        for name, fig in by_name.items():
            table.append([MODE_TITLES[mode], name + (" (floor)" if name == DIRECT else ""),
                          _f(fig["added_p50_ms"], ".3f"), _f(fig["added_p99_ms"], ".3f"), _f(fig["c32_rps"], ".0f"),
                          _f(fig["c32_p99_ms"], ".2f"), _f(fig["rss_mb"], ".0f"), _f(fig["cold_start_s"], ".2f"),
                          _x(fig, "x_passthrough", "c32_rps"), _x(fig, "x_own_passthrough", "c32_rps"),
                          _x(fig, "x_litellm", "c32_rps"),
                          _x(fig, "x_passthrough", "added_p50_ms"), str(fig["errors"])])
    return table


def text_table(figs: dict[str, dict[str, dict[str, Any]]]) -> str:
    table = [HEADER, *rows(figs)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(figs: dict[str, dict[str, dict[str, Any]]], checks: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [f"# agent-router benchmark ({meta['when']})", "",
           f"Method: {meta['method']}", ""]
    out += ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(HEADER) - 2)) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows(figs)]
    if checks:
        out += ["", "| target | agent-router | met |", "|---|---:|:---:|"]
        out += [f"| {c['target']} | {c['shown']} | "
                f"{'yes' if c['met'] else 'n/a' if c['met'] is None else '**no**'} |" for c in checks]
    out += _twin_verdicts(checks)
    out += ["", "Floors: `passthrough` is the reference floor the targets use (Starlette + aiohttp, as in the issue); "
            "`passthrough-own` is the same hop on the router's own parts (plain ASGI + its HTTP/1.1 pool).",
            "", "Notes: " + meta["notes"], ""]
    return "\n".join(out)


def _twin_verdicts(checks: list[dict[str, Any]]) -> list[str]:
    """One sentence per wire mode that misses "about chat's cost", so a reader of the Markdown cannot miss it."""
    missed = [c for c in checks if "chat_twin" in c and c["met"] is False]
    if not missed:
        return []
    return ["", *(f"**Missed:** on {MODE_TITLES[c['mode']]} agent-router does {c['shown']} its own throughput on "
                  f"chat {MODE_TITLES[c['chat_twin']]} (target {c['goal']}×): this wire does not yet cost about what "
                  f"chat costs." for c in missed)]
