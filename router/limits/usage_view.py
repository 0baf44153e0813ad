"""Where every capped agent and role stands against its caps right now, for operators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from router.config.snapshot import Snapshot
from router.limits.checks import Scope, checks_for, scopes_for
from router.store.counters import Counters

_FIELDS = {"rpm": "requests_per_minute", "tpm": "tokens_per_minute", "usd_day": "usd_per_day",
           "usd_month": "usd_per_month"}


def capped_scopes(snapshot: Snapshot) -> list[Scope]:
    """Every configured agent (with the agent defaults) and role that has at least one cap."""
    spec = snapshot.spec
    found = [s for name in spec.agents for s in scopes_for(snapshot, name, None)]
    found += [s for name in spec.roles for s in scopes_for(snapshot, None, name)]
    return found


async def current_usage(counters: Counters, snapshot: Snapshot, now: datetime) -> list[dict[str, Any]]:
    """One read of every counter (one round trip): each scope's caps with what is used of them."""
    scopes = capped_scopes(snapshot)
    checks = checks_for(tuple(scopes), now)
    values = await counters.get_many([check.gate.key for check in checks])
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for check, value in zip(checks, values, strict=True):
        scope = check.scope
        row = rows.setdefault((scope.kind, scope.name), {"kind": scope.kind, "name": scope.name, "limits": {}})
        entry: dict[str, Any] = {"limit": check.limit, "used": value}
        if check.period:
            entry["period"] = check.period
            entry["resets_at"] = f"{check.resets_at:%Y-%m-%dT%H:%M:%SZ}"
        row["limits"][_FIELDS[check.metric]] = entry
    return list(rows.values())
