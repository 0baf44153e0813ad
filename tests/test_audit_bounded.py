"""One request, a bounded number of audit rows: a request offering many tools writes a few rows, and still every
decision is listed by ``audit list`` (CLI and admin API) and covered by ``audit verify``.

Driven with the openai SDK against the router and the fake upstream; the rows are read back with SQL and the
CLI, and tampered with the way an intruder would, on SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from router.ledger.audit_rows import MAX_DETAILED
from tests.harness import wait_until
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    MESSAGES,
    db_fixture,
    ledger_config,
    module_db_fixture,
    query,
    run_cli,
)
from tests.policy_helpers import ROLES, agent_key, agents_yaml, tool

ADMIN = "admin-secret"
ALLOWED = [f"read_{i}" for i in range(60)]  # allowed by the ops role's "read_*"
STRIPPED = [f"other_{i}" for i in range(MAX_DETAILED + 8)]  # not in its allow list


@pytest.fixture
def router(upstream: Any, start_router: Any, db: str) -> Any:
    return start_router(ledger_config(upstream.openai_base_url, ROLES + agents_yaml(("ops-bot", "ops"))),
                        database_url=db, ledger_flush_interval=30, admin_key=ADMIN)


def big_request(router: Any) -> str:
    response = router.client(api_key=agent_key("ops-bot")).chat.completions.with_raw_response.create(
        model="paid", messages=MESSAGES, tools=[tool(name) for name in [*ALLOWED, "search", *STRIPPED]])
    return str(response.headers["x-request-id"])


def listed(db: str, *args: str) -> list[dict[str, Any]]:
    result = run_cli("audit", "list", "--format", "json", "--limit", "1000", *args, url=db)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def test_a_request_with_many_tools_writes_a_bounded_number_of_rows(router: Any, db: str) -> None:
    request_id = big_request(router)
    router.stop()
    rows = query(db, "SELECT * FROM audit_events WHERE request_id = ? ORDER BY seq", (request_id,))
    # one row for every allowed tool, MAX_DETAILED stripped ones, one row for the stripped rest
    assert len(rows) == 1 + MAX_DETAILED + 1, [(row["tool"], row["action"]) for row in rows]
    allowed = next(row for row in rows if row["action"] == "allowed")
    assert allowed["tool"] is None and allowed["reason"].startswith(f"{len(ALLOWED) + 1} tools allowed")
    assert [row["tool"] for row in rows if row["action"] == "stripped" and row["tool"]] == STRIPPED[:MAX_DETAILED]

    entries = listed(db, "--request-id", request_id)
    decisions = {(entry["tool"], entry["action"]) for entry in entries}
    assert decisions == {(name, "allowed") for name in [*ALLOWED, "search"]} | {(name, "stripped")
                                                                                 for name in STRIPPED}
    assert len(entries) == len(ALLOWED) + 1 + len(STRIPPED)
    folded = next(entry for entry in entries if entry["tool"] == STRIPPED[-1])
    assert folded["rule"] == "default-deny" and STRIPPED[-1] in folded["reason"]

    (one,) = listed(db, "--tool", "read_42")  # found inside the folded row, not "read_4" nor "read_420"
    assert (one["action"], one["rule"], one["request_id"]) == ("allowed", "allow:read_*", request_id)
    assert [entry["tool"] for entry in listed(db, "--tool", STRIPPED[-1])] == [STRIPPED[-1]]
    assert len(listed(db, "--request-id", request_id, "--limit", "5")) == 5

    ok = run_cli("audit", "verify", url=db)
    assert ok.returncode == 0, ok.stderr


def test_the_admin_api_lists_every_decision_of_a_folded_row(upstream: Any, start_router: Any, db: str) -> None:
    router = start_router(ledger_config(upstream.openai_base_url, ROLES + agents_yaml(("ops-bot", "ops"))),
                          database_url=db, ledger_flush_interval=0.05, admin_key=ADMIN)
    request_id = big_request(router)
    params = {"request_id": request_id, "action": "allowed", "limit": 1000}
    with httpx.Client(base_url=router.url, timeout=10, headers={"authorization": f"Bearer {ADMIN}"}) as http:
        assert wait_until(lambda: len(http.get("/admin/audit", params=params).json()["data"]) > 1, 10)
        data = http.get("/admin/audit", params=params).json()["data"]
        found = http.get("/admin/audit", params={"tool": "read_7"}).json()["data"]
    assert sorted(entry["tool"] for entry in data) == sorted([*ALLOWED, "search"])
    assert len({entry["seq"] for entry in data}) == 1 and data[0]["time"]
    assert [(entry["tool"], entry["request_id"]) for entry in found] == [("read_7", request_id)]


def test_a_decision_rewritten_inside_a_folded_row_is_caught_by_verify(router: Any, db: str) -> None:
    request_id = big_request(router)
    router.stop()
    row = query(db, "SELECT seq, extra FROM audit_events WHERE request_id = ? AND action = 'allowed'",
                (request_id,))[0]
    forged = row["extra"].replace('"read_7"', '"drop_tables"')
    assert forged != row["extra"]
    query(db, "UPDATE audit_events SET extra = ? WHERE seq = ?", (forged, row["seq"]))
    broken = run_cli("audit", "verify", url=db)
    assert broken.returncode == 1 and f"seq {row['seq']}: altered" in broken.stderr, broken.stderr


def decision(tool: str, action: str, stage: str = "request") -> dict[str, Any]:
    return {"ts": 1.0, "request_id": "r", "agent": "a", "role": "r", "model": "m", "tool": tool, "action": action,
            "stage": stage, "rule": "x", "reason": f"about {tool}", "policy_version": "v"}


def test_folding_keeps_every_decision_in_a_bounded_number_of_rows() -> None:
    from router.ledger.audit_rows import fold

    events = [decision(f"t{i}", action, stage) for stage in ("request", "history", "response", "stream")
              for action in ("allowed", "stripped", "blocked", "would_strip") for i in range(300)]
    rows = fold(events)
    assert len(rows) <= MAX_DETAILED + 16
    held = [(e[0], row["action"], row["stage"]) for row in rows for e in row.get("decisions", [[row["tool"]]])]
    assert sorted(held) == sorted((e["tool"], e["action"], e["stage"]) for e in events)
    alone = [decision("a", "allowed"), decision("b", "stripped"), decision("c", "stripped", "response")]
    assert fold(alone) is alone  # one decision per group: stored as it always was
    one_over = [decision(f"s{i}", "stripped") for i in range(MAX_DETAILED + 1)]
    assert fold(one_over) == one_over  # a single leftover gets its own row rather than a list of one
