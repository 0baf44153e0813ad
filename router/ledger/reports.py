"""Finance reports over the usage ledger: figures per group, and totals that reconcile exactly.

Definitions (the same in the CLI and ``GET /admin/usage``):

- ``requests``: requests that ended in the range (their ``request`` row); ``errors`` of them failed after
  reaching an upstream, ``refused`` were refused by the router before any upstream (auth, access, limits,
  policy, bad input). ``unauthenticated`` of the refused ones had no valid key: they are stored as one row per
  source address, reason and minute whose ``requests`` column holds the count (group by ``source`` to see who
  sent them; see ``router.ledger.refusals``).
- ``attempts``: upstream attempts (``attempt`` rows, fallbacks included); ``failed_attempts`` of them failed.
- ``prompt_tokens`` / ``completion_tokens`` / ``cached_tokens`` / ``cost_usd``: as the providers reported them
  (exact). ``cost_usd`` leaves out requests whose price is unknown; they are counted in ``unpriced_requests``
  (their tokens are still in the token columns).
- ``estimated_*``: requests whose provider reported no usage, counted with tiktoken; never added to the exact
  columns.

Tokens and cost are summed over ``request`` rows only, so a fallback is never counted twice. Costs are stored as
whole nano-dollars: sums are exact integers. Grouping by ``deployment``/``provider``/``model`` puts a request under
the deployment that served it (or was tried last) and each attempt under its own.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from router.ledger.timerange import iso, ts_clauses
from router.store.database import Database

GROUP_KEYS: dict[str, str] = {
    "model": "model", "requested_model": "requested_model", "deployment": "deployment", "provider": "provider",
    "agent": "agent", "role": "role", "rule": "rule", "day": "day", "policy_outcome": "policy_outcome",
    "status": "status", "source": "source", "api": "api", "session": "session_id", "session_agent": "session_agent",
    "parent_agent": "parent_agent",
}

_REQ = "kind = 'request'"
METRICS: dict[str, str] = {
    "requests": f"CASE WHEN {_REQ} THEN requests ELSE 0 END",
    "errors": f"CASE WHEN {_REQ} AND status = 'error' THEN requests ELSE 0 END",
    "refused": f"CASE WHEN {_REQ} AND status = 'refused' THEN requests ELSE 0 END",
    "unauthenticated": f"CASE WHEN {_REQ} AND source IS NOT NULL THEN requests ELSE 0 END",
    "attempts": "CASE WHEN kind = 'attempt' THEN 1 ELSE 0 END",
    "failed_attempts": "CASE WHEN kind = 'attempt' AND status <> 'ok' THEN 1 ELSE 0 END",
    "prompt_tokens": f"CASE WHEN {_REQ} AND estimated = 0 THEN prompt_tokens ELSE 0 END",
    "completion_tokens": f"CASE WHEN {_REQ} AND estimated = 0 THEN completion_tokens ELSE 0 END",
    "cached_tokens": f"CASE WHEN {_REQ} AND estimated = 0 THEN cached_tokens ELSE 0 END",
    "cache_write_tokens": f"CASE WHEN {_REQ} AND estimated = 0 THEN cache_write_tokens ELSE 0 END",
    "cost_nano": f"CASE WHEN {_REQ} AND estimated = 0 AND cost_nano IS NOT NULL THEN cost_nano ELSE 0 END",
    "estimated_requests": f"CASE WHEN {_REQ} AND estimated = 1 THEN 1 ELSE 0 END",
    "estimated_prompt_tokens": f"CASE WHEN {_REQ} AND estimated = 1 THEN prompt_tokens ELSE 0 END",
    "estimated_completion_tokens": f"CASE WHEN {_REQ} AND estimated = 1 THEN completion_tokens ELSE 0 END",
    "estimated_cost_nano": f"CASE WHEN {_REQ} AND estimated = 1 AND cost_nano IS NOT NULL THEN cost_nano ELSE 0 END",
    "unpriced_requests": f"CASE WHEN {_REQ} AND cost_nano IS NULL THEN 1 ELSE 0 END",
}
COLUMNS_SHOWN: list[str] = ["requests", "errors", "refused", "unauthenticated", "attempts", "failed_attempts",
                            "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_usd",
                            "estimated_requests",
                            "estimated_prompt_tokens", "estimated_completion_tokens", "estimated_cost_usd",
                            "unpriced_requests"]


class ReportError(ValueError):
    pass


def parse_group_by(text: str | list[str] | None) -> list[str]:
    """``model,agent`` -> ["model", "agent"]; unknown keys are an error naming the valid ones."""
    parts = text if isinstance(text, list) else (text or "").split(",")
    keys = [part.strip() for item in parts for part in item.split(",") if part.strip()]
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown:
        raise ReportError(f"unknown group-by key(s) {', '.join(unknown)}; use any of {', '.join(GROUP_KEYS)}")
    return list(dict.fromkeys(keys))


def usd(nano: int) -> str:
    """Nano-dollars as an exact decimal string."""
    return f"{Decimal(nano) / Decimal(10**9):.9f}"


def usage_report(database: Database, since: float | None, until: float | None, group_by: list[str]) -> dict[str, Any]:
    """Figures per group plus totals; runs on the database thread."""
    clauses, params = ts_clauses(since, until)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    keys = [GROUP_KEYS[key] for key in group_by]
    select = [f"{column} AS {key}" for key, column in zip(group_by, keys, strict=True)]
    select += [f"SUM({expression}) AS {name}" for name, expression in METRICS.items()]
    statement = f"SELECT {', '.join(select)} FROM usage_records{where}"
    if keys:
        order = ", ".join(f"CASE WHEN {key} IS NULL THEN 1 ELSE 0 END, {key}" for key in keys)  # NULLs last
        statement += f" GROUP BY {', '.join(keys)} ORDER BY {order}"
    groups = []
    for row in database.fetchall(statement, params):
        figures = {name: int(row[name] or 0) for name in METRICS}
        if not keys and figures["requests"] == 0 and figures["attempts"] == 0:
            continue
        groups.append(_present({key: row[key] for key in group_by}, figures))
    totals = _present({}, {name: sum(group[name] for group in groups) for name in METRICS})
    return {"object": "usage_report", "from": iso(since), "to": iso(until), "group_by": group_by,
            "groups": groups, "totals": totals}


def _present(group: dict[str, Any], figures: dict[str, int]) -> dict[str, Any]:
    """Figures plus the costs as exact USD decimal strings (``cost_usd``; the integers stay as ``*_nano``)."""
    return {**group, **figures, "cost_usd": usd(figures["cost_nano"]),
            "estimated_cost_usd": usd(figures["estimated_cost_nano"])}
