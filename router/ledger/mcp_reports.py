"""The tool-plane report: MCP calls per group (server, tool, agent...), from ``mcp_calls`` only.

Definitions (the same in ``agent-router mcp report`` and ``GET /admin/mcp/usage``):

- ``calls``: calls in the range; ``allowed``, ``denied``, ``would_deny`` (audit_only: let through),
  ``rate_limited`` and ``unavailable`` split them by the gateway's decision;
- ``errors``: calls whose outcome is neither ``ok`` nor ``refused`` (a tool error, an upstream error, a timeout,
  a cancelled call, a result over its size cap);
- ``p50_latency_ms`` / ``p95_latency_ms``: nearest-rank percentiles (the value at rank ``ceil(p * n)``) of the
  group's latencies; PostgreSQL computes them (``percentile_disc``), SQLite in one streamed pass over the rows
  in order (constant memory: no group's latencies are held);
- ``result_bytes``: bytes of results returned to agents.

Tool calls carry no tokens or cost and never enter ``usage_records``: the finance report does not see them.
"""

from __future__ import annotations

import math
from typing import Any

from router.ledger.reports import ReportError
from router.ledger.timerange import iso, ts_clauses
from router.store.database import Database

GROUP_KEYS: tuple[str, ...] = ("server", "tool", "agent", "role", "decision", "outcome", "method", "day")
DEFAULT_GROUP_BY = ["server", "tool"]
_COUNTS: dict[str, str] = {
    "calls": "1",
    "allowed": "CASE WHEN decision = 'allowed' THEN 1 ELSE 0 END",
    "denied": "CASE WHEN decision = 'denied' THEN 1 ELSE 0 END",
    "would_deny": "CASE WHEN decision = 'would_deny' THEN 1 ELSE 0 END",
    "rate_limited": "CASE WHEN decision = 'rate_limited' THEN 1 ELSE 0 END",
    "unavailable": "CASE WHEN decision = 'unavailable' THEN 1 ELSE 0 END",
    "errors": "CASE WHEN outcome NOT IN ('ok', 'refused') THEN 1 ELSE 0 END",
    "result_bytes": "result_bytes",
}
PERCENTILES: dict[str, float] = {"p50_latency_ms": 0.5, "p95_latency_ms": 0.95}
COLUMNS_SHOWN: list[str] = [*list(_COUNTS)[:-1], *PERCENTILES, "result_bytes"]
_STREAM_CHUNK = 1000


def parse_group_by(text: str | list[str] | None) -> list[str]:
    """``server,tool`` -> ["server", "tool"]; empty -> the default; unknown keys are an error naming the valid."""
    parts = text if isinstance(text, list) else (text or "").split(",")
    keys = [part.strip() for item in parts for part in item.split(",") if part.strip()]
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown:
        raise ReportError(f"unknown --by key(s) {', '.join(unknown)}; use any of {', '.join(GROUP_KEYS)}")
    return list(dict.fromkeys(keys)) or list(DEFAULT_GROUP_BY)


def mcp_report(database: Database, since: float | None, until: float | None, group_by: list[str]) -> dict[str, Any]:
    """Figures per group plus totals (over every call: percentiles are not summed); runs on the database
    thread, in one transaction."""
    for key in group_by:
        if key not in GROUP_KEYS:
            raise ReportError(f"unknown group key {key!r}")
    with database.transaction() as cursor:
        groups = _figures(database, cursor, since, until, group_by)
        totals = _figures(database, cursor, since, until, [])
    empty = {name: 0 for name in _COUNTS} | {name: None for name in PERCENTILES}
    return {"object": "mcp_report", "from": iso(since), "to": iso(until), "group_by": group_by,
            "groups": groups, "totals": totals[0] if totals else empty}


def _where(since: float | None, until: float | None) -> tuple[str, list[Any]]:
    clauses, params = ts_clauses(since, until)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _figures(database: Database, cursor: Any, since: float | None, until: float | None,
             keys: list[str]) -> list[dict[str, Any]]:
    where, params = _where(since, until)
    select = [*keys, *(f"SUM({expression})" for expression in _COUNTS.values())]
    postgres = database.dialect == "postgres"
    if postgres:
        select += [f"percentile_disc({p}) WITHIN GROUP (ORDER BY latency_ms)" for p in PERCENTILES.values()]
    statement = f"SELECT {', '.join(select)} FROM mcp_calls{where}"
    if keys:
        statement += f" GROUP BY {', '.join(keys)} ORDER BY {_order(keys)}"
    cursor.execute(database.sql(statement), tuple(params))
    groups = []
    width = len(keys)
    for row in cursor.fetchall():
        figures = {name: int(value or 0) for name, value in zip(_COUNTS, row[width:], strict=False)}
        if figures["calls"] == 0:
            continue  # no key: the one aggregate row of an empty range
        latencies = dict(zip(PERCENTILES, map(_ms, row[width + len(_COUNTS):]), strict=True)) if postgres else \
            dict.fromkeys(PERCENTILES)
        groups.append({**dict(zip(keys, row[:width], strict=True)), **figures, **latencies})
    if not postgres and groups:
        _streamed_percentiles(database, cursor, where, params, keys, groups)
    return groups


def _order(keys: list[str]) -> str:
    return ", ".join(f"CASE WHEN {key} IS NULL THEN 1 ELSE 0 END, {key}" for key in keys)  # NULLs last


def _ranks(count: int) -> dict[int, list[str]]:
    """Which percentiles sit at which 1-based rank of ``count`` latencies in order: the nearest rank, computed
    as PostgreSQL's percentile_disc does (``ceil(p * n)`` in doubles), so both databases agree."""
    ranks: dict[int, list[str]] = {}
    for name, p in PERCENTILES.items():
        ranks.setdefault(max(1, math.ceil(p * count)), []).append(name)
    return ranks


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _streamed_percentiles(database: Database, cursor: Any, where: str, params: list[Any], keys: list[str],
                          groups: list[dict[str, Any]]) -> None:
    """Fill in each group's percentiles from one pass over its latencies in order (SQLite hands a cursor's rows
    over as they are read, so memory stays constant whatever the number of calls)."""
    wanted = {tuple(group[key] for key in keys): group for group in groups}
    order = f"{_order(keys)}, latency_ms" if keys else "latency_ms"
    cursor.execute(database.sql(f"SELECT {', '.join([*keys, 'latency_ms'])} FROM mcp_calls{where} ORDER BY "
                                f"{order}"), tuple(params))
    current: tuple[Any, ...] | None = None
    group: dict[str, Any] | None = None
    ranks: dict[int, list[str]] = {}
    seen = 0
    while chunk := cursor.fetchmany(_STREAM_CHUNK):
        for row in chunk:
            key = tuple(row[:-1])
            if key != current:
                current, seen = key, 0
                group = wanted.get(key)
                ranks = {} if group is None else _ranks(int(group["calls"]))
            seen += 1
            names = ranks.get(seen)
            if names and group is not None:
                for name in names:
                    group[name] = _ms(row[-1])
