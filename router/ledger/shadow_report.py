"""What rules in shadow would have changed, over a time range: the evidence an operator needs to switch one to
enforce.

A rule in shadow (``shadow: true`` on a deny entry or a condition, on either plane) decides every call but only
records what it would have done: an audit event with action ``would_deny`` and rule ``shadow:<rule>``. This
report groups those events by plane, role, tool and rule, with how many calls, how many agents, the first and
last time and a few example request ids to look up (``audit list --request-id``).
"""

from __future__ import annotations

from typing import Any

from router.ledger import audit_chain
from router.ledger.timerange import iso
from router.store.database import Database

SHADOW_PREFIX = "shadow:"
MAX_EVENTS = 100_000
"""Shadow decisions read per report (newest first); a larger range reports that it was cut."""
EXAMPLES = 3
COLUMNS = ["plane", "role", "tool", "rule", "calls", "agents", "first", "last", "examples"]


def shadow_report(database: Database, since: float | None, until: float | None) -> dict[str, Any]:
    where = audit_chain.AuditFilter(since=since, until=until, action="would_deny", limit=MAX_EVENTS)
    read = audit_chain.list_events(database, where)
    events = [event for event in read if str(event.get("rule") or "").startswith(SHADOW_PREFIX)]
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for event in reversed(events):  # oldest first: examples are the first occurrences
        plane = "mcp" if event.get("stage") == "mcp" else "model"
        key = (plane, str(event.get("role")), str(event.get("tool")), str(event.get("rule")))
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"plane": plane, "role": key[1], "tool": key[2], "rule": key[3], "calls": 0,
                                   "_agents": set(), "first": event["ts"], "last": event["ts"], "examples": []}
        group["calls"] += 1
        group["_agents"].add(event.get("agent"))
        group["last"] = event["ts"]
        if len(group["examples"]) < EXAMPLES and event.get("request_id") not in group["examples"]:
            group["examples"].append(event.get("request_id"))
    rows = []
    for group in sorted(groups.values(), key=lambda g: (-g["calls"], g["plane"], g["role"], g["tool"], g["rule"])):
        agents = group.pop("_agents")
        rows.append({**group, "agents": len(agents), "first": iso(float(group["first"])),
                     "last": iso(float(group["last"]))})
    return {"object": "shadow_report", "since": since, "until": until, "groups": rows,
            "total": sum(row["calls"] for row in rows), "truncated": len(read) >= MAX_EVENTS}


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**row, "examples": " ".join(map(str, row["examples"]))} for row in report["groups"]]
