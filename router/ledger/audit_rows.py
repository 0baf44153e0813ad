"""How many audit rows one request writes: bounded, whatever number of tools it offers.

A request offering 10,000 tools used to write 10,000 chained rows. Now its decisions are folded before they are
chained (on the writer's thread), per group of the same stage and action:

- a group of one decision is stored as it always was, so the usual request's rows do not change;
- allowed decisions (the bulk of a big request, and the least interesting) are one row per stage: ``tool``
  is null, ``reason`` says how many, and ``extra`` holds ``{"decisions": [[tool, rule], ...]}``;
- the first :data:`MAX_DETAILED` decisions that are not ``allowed`` (stripped, blocked, would_strip...) keep a
  row each, with their reason: they are what an operator searches for; the rest of each group is one row whose
  ``extra`` holds ``{"decisions": [[tool, rule, reason], ...]}``.

So a request writes at most ``MAX_DETAILED`` + (stages x actions) rows. Every decision is still in a row the
hash chain covers (``extra`` is hashed), ``verify`` checks it, and :func:`expand` gives ``audit list`` and
``GET /admin/audit`` one entry per decision again.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DETAILED = 16
"""Decisions other than ``allowed`` stored one row each, per request; the rest are folded."""
DECISIONS = "decisions"
"""The key of a folded row's decision list (in the row's ``extra``)."""


def fold(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows to chain for one request's events, in the order their groups first appear."""
    if len(events) <= 1:
        return events
    groups: dict[Any, list[dict[str, Any]]] = {}
    for event in events:
        key: Any = (event.get("stage"), event.get("action"), event.get("agent"), event.get("role"),
                    event.get("model"), event.get("policy_version"))
        if DECISIONS in event or None in key[:2]:
            key = id(event)  # not a tool decision (a chain event, an already folded row): kept as it is
        groups.setdefault(key, []).append(event)
    if len(groups) == len(events):
        return events  # one event per group: nothing to fold (the usual request)
    rows: list[dict[str, Any]] = []
    budget = MAX_DETAILED
    for group in groups.values():
        if len(group) == 1:
            rows.append(group[0])
            budget -= group[0].get("action") != "allowed"
        elif group[0]["action"] == "allowed":
            rows.append(_folded(group, [[e.get("tool"), e.get("rule")] for e in group],
                                f"{len(group)} tools allowed (each in extra.decisions)"))
        else:
            kept = group[:max(0, budget)]
            rest = group[len(kept):]
            budget -= len(kept)
            rows += kept if len(rest) != 1 else group
            if len(rest) > 1:
                rows.append(_folded(rest, [[e.get("tool"), e.get("rule"), e.get("reason")] for e in rest],
                                    f"{len(rest)} more decisions '{group[0]['action']}' (each in extra.decisions)"))
    return rows


def _folded(group: list[dict[str, Any]], decisions: list[list[Any]], reason: str) -> dict[str, Any]:
    rules = {entry[1] for entry in decisions}
    row = dict(group[0])  # who, when, which request, policy version, and any field added later
    row.update(tool=None, rule=rules.pop() if len(rules) == 1 else None, reason=reason)
    row[DECISIONS] = decisions
    return row


def expand(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One listed row as one entry per decision it holds (itself when it holds one)."""
    extra = row.get("extra")
    if not extra or f'"{DECISIONS}"' not in extra:
        return [row]
    try:
        decisions = orjson.loads(extra).get(DECISIONS)
    except (orjson.JSONDecodeError, AttributeError):
        return [row]
    if not isinstance(decisions, list):
        return [row]
    entries = []
    for entry in decisions:
        if not isinstance(entry, list) or len(entry) < 2:
            continue
        reason = entry[2] if len(entry) > 2 else f"allowed by {entry[1]}"
        entries.append({**row, "tool": entry[0], "rule": entry[1], "reason": reason, "extra": None})
    return entries or [row]


def tool_in_extra(tool: str) -> str:
    """A LIKE pattern (escape character ``\\``) that finds the folded rows that may hold a decision on ``tool``;
    a superset (SQLite's LIKE ignores case): :func:`expand` and an exact comparison follow."""
    quoted = orjson.dumps(tool).decode()
    return "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
