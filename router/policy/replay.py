"""Replay recorded tool decisions against another config: what a policy change would change, before it ships.

Sources: the audit trail's model-plane decisions (role, tool, stage, action; arguments are not recorded there,
so a tool whose new decision depends on its arguments is reported as ``needs arguments``), and the tool plane's
``mcp_calls`` rows (with their arguments when the server's ``record_arguments`` kept them, else the same
``needs arguments``). Each decision is re-decided with the new config's policy for the same role, by the same
decide function, and compared as the agent would see it: let through, or not.

Pure apart from reading the records: no router runs, nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from router.config.snapshot import Snapshot
from router.errors import PolicyViolation
from router.mcp.policy import decide_tool, mcp_policy_for
from router.policy.decide import ToolDecision, decide, policy_for

THROUGH = frozenset(("allowed", "would_strip", "would_deny"))
"""Recorded actions under which the call went on (audit_only lets a violation through)."""
MODEL_STAGES = frozenset(("request", "history", "response", "stream"))
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded decision: which plane, role and tool, whether it went through, and (MCP) its arguments."""

    plane: str
    role: str | None
    tool: str
    through: bool
    rule: str | None
    request_id: str | None
    server: str | None = None
    arguments: str | None = None


def from_audit(events: Iterable[dict[str, Any]]) -> list[Recorded]:
    """Model-plane tool decisions of the audit trail (one per tool and stage; shadow and MCP events left out)."""
    found = []
    for event in events:
        tool, rule = event.get("tool"), str(event.get("rule") or "")
        if event.get("stage") not in MODEL_STAGES or not isinstance(tool, str) or rule.startswith("shadow:"):
            continue
        found.append(Recorded("model", event.get("role"), tool, event.get("action") in THROUGH, rule or None,
                              event.get("request_id")))
    return found


def from_mcp_calls(rows: Iterable[dict[str, Any]]) -> list[Recorded]:
    """The tool plane's ``tools/call`` rows (refusals for reasons other than policy, like limits, left out)."""
    found = []
    for row in rows:
        if row.get("method") != "tools/call" or row.get("decision") not in ("allowed", "denied", "would_deny"):
            continue
        found.append(Recorded("mcp", row.get("role"), str(row.get("tool")), row.get("decision") != "denied",
                              row.get("rule"), row.get("request_id"), server=str(row.get("server")),
                              arguments=row.get("arguments")))
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    through: bool | None
    """None: the new decision depends on arguments that were not recorded."""
    rule: str


def redecide(snapshot: Snapshot, item: Recorded) -> Outcome:
    """The new config's decision on one recorded call."""
    try:
        if item.plane == "mcp":
            mcp = mcp_policy_for(snapshot, item.role)
            decision = decide_tool(mcp, item.server or "", item.tool, item.arguments)
            audit_only = mcp.audit_only
        else:
            policy = policy_for(snapshot, item.role)
            decision = decide(policy, item.tool)
            audit_only = policy.mode == "audit_only"
    except PolicyViolation as exc:
        return Outcome(False, exc.code or "policy_unavailable")
    return _outcome(decision, audit_only)


def _outcome(decision: ToolDecision, audit_only: bool) -> Outcome:
    if decision.allowed and decision.pending:
        return Outcome(None, decision.rule)
    return Outcome(decision.allowed or audit_only, decision.rule)


def _label(through: bool | None) -> str:
    return "needs arguments" if through is None else "through" if through else "refused"


def replay(snapshot: Snapshot, recorded: Iterable[Recorded]) -> dict[str, Any]:
    """Every change, grouped by plane, role, tool, before and after, with counts and example request ids."""
    groups: dict[tuple[str, str, str, str, str, str], dict[str, Any]] = {}
    total = unchanged = 0
    for item in recorded:
        total += 1
        outcome = redecide(snapshot, item)
        if outcome.through is item.through:
            unchanged += 1
            continue
        tool = f"{item.server}:{item.tool}" if item.plane == "mcp" else item.tool
        key = (item.plane, str(item.role), tool, _label(item.through), _label(outcome.through), outcome.rule)
        group = groups.setdefault(key, {"plane": key[0], "role": key[1], "tool": tool, "before": key[3],
                                        "after": key[4], "new_rule": outcome.rule, "old_rule": item.rule,
                                        "decisions": 0, "examples": []})
        group["decisions"] += 1
        if len(group["examples"]) < EXAMPLES and item.request_id not in group["examples"]:
            group["examples"].append(item.request_id)
    changes = sorted(groups.values(), key=lambda g: (-g["decisions"], g["plane"], g["role"], g["tool"]))
    return {"object": "policy_replay", "config": snapshot.files[0] if snapshot.files else None,
            "version": snapshot.version, "decisions": total, "unchanged": unchanged,
            "changed": total - unchanged, "changes": changes}
