"""The audit trail: every policy decision stored, hash-chained, verified, queried; tampering is caught.

Decisions come from real requests (the openai SDK against the router against the fake upstream); tampering is
done the way an intruder would, with SQL straight on the database, on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from router.ledger.records import FinishedRequest, UsageRecord
from router.ledger.writer import write_batch
from router.store.database import Database
from tests.fakes.behaviours import ToolCalls
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    MESSAGES,
    db_fixture,
    ledger_config,
    module_db_fixture,
    query,
    run_cli,
    usage_rows,
)
from tests.policy_helpers import ROLES, agent_key, agents_yaml, tool

AGENTS = agents_yaml(("ops-bot", "ops"), ("block-bot", "blocker"), ("shadow-bot", "shadow"))
ADMIN = "admin-secret"


@pytest.fixture
def router(upstream: Any, start_router: Any, db: str) -> Any:
    return start_router(ledger_config(upstream.openai_base_url, ROLES + AGENTS), database_url=db,
                        ledger_flush_interval=30, admin_key=ADMIN)


def client(router: Any, agent: str) -> openai.OpenAI:
    return router.client(api_key=agent_key(agent))


def make_decisions(router: Any, upstream: Any) -> list[str]:
    """Requests whose tools are allowed, stripped, shadow-audited and blocked; returns their request ids."""
    ids = []
    for _ in range(2):
        response = client(router, "ops-bot").chat.completions.with_raw_response.create(
            model="paid", messages=MESSAGES, tools=[tool("search"), tool("read_secrets"), tool("write_file")])
        ids.append(response.headers["x-request-id"])
    upstream.queue("up-priced", ToolCalls(calls=[("search", "{}"), ("rm_rf", "{}")]))
    client(router, "shadow-bot").chat.completions.create(model="paid", messages=MESSAGES, tools=[tool("search")])
    with pytest.raises(openai.PermissionDeniedError):
        client(router, "block-bot").chat.completions.create(
            model="paid", messages=MESSAGES, tools=[tool("search"), tool("drop_tables")])
    return ids


def events(url: str) -> list[dict[str, Any]]:
    return query(url, "SELECT * FROM audit_events ORDER BY seq")


def test_every_decision_is_stored_with_who_what_and_why(router: Any, upstream: Any, db: str) -> None:
    ids = make_decisions(router, upstream)
    router.stop()
    rows = events(db)
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    ops = [row for row in rows if row["request_id"] == ids[0]]
    assert {(row["tool"], row["action"]) for row in ops} == {("search", "allowed"), ("read_secrets", "stripped"),
                                                            ("write_file", "stripped")}
    for row in ops:
        assert (row["agent"], row["role"], row["model"], row["stage"]) == ("ops-bot", "ops", "paid", "request")
        assert row["rule"] and row["reason"] and row["policy_version"] and row["ts"] > time.time() - 60
    assert any(row["agent"] == "shadow-bot" and row["tool"] == "rm_rf" and row["action"] == "would_strip"
               for row in rows)
    assert any(row["agent"] == "block-bot" and row["tool"] == "drop_tables" and row["action"] == "blocked"
               for row in rows)
    outcomes = {(row["agent"], row["policy_outcome"], row["status"]) for row in usage_rows(db, "request")}
    assert outcomes == {("ops-bot", "stripped", "ok"), ("shadow-bot", "audit_only", "ok"),
                        ("block-bot", "blocked", "refused")}


def test_verify_passes_on_an_intact_chain_then_names_an_altered_row(router: Any, upstream: Any, db: str) -> None:
    make_decisions(router, upstream)
    router.stop()
    total = len(events(db))
    ok = run_cli("audit", "verify", url=db)
    assert ok.returncode == 0, ok.stderr
    assert f"{total} events verified" in ok.stdout

    query(db, "UPDATE audit_events SET action = 'allowed' WHERE seq = 2")
    broken = run_cli("audit", "verify", url=db)
    assert broken.returncode == 1
    assert "seq 2: altered" in broken.stderr, broken.stderr


def test_verify_names_a_deleted_row_and_a_deleted_tail(router: Any, upstream: Any, db: str) -> None:
    make_decisions(router, upstream)
    router.stop()
    last = len(events(db))
    query(db, f"DELETE FROM audit_events WHERE seq = {last}")
    tail = run_cli("audit", "verify", url=db)
    assert tail.returncode == 1 and f"seq {last}: missing" in tail.stderr, tail.stderr
    query(db, "DELETE FROM audit_events WHERE seq = 3")
    gap = run_cli("audit", "verify", url=db)
    assert gap.returncode == 1 and "seq 3: missing" in gap.stderr, gap.stderr


def test_a_row_rewritten_with_a_fresh_hash_is_still_caught(router: Any, upstream: Any, db: str) -> None:
    from router.ledger.audit_chain import row_hash

    make_decisions(router, upstream)
    router.stop()
    row = events(db)[1]
    forged = {**row, "action": "allowed", "ts": float(row["ts"])}
    query(db, "UPDATE audit_events SET action = 'allowed', hash = ? WHERE seq = 2",
          (row_hash(row["prev_hash"], forged),))
    result = run_cli("audit", "verify", url=db)
    assert result.returncode == 1 and "row 2 was altered" in result.stderr, result.stderr


def test_list_filters_in_the_cli_and_the_admin_api(upstream: Any, start_router: Any, db: str) -> None:
    router = start_router(ledger_config(upstream.openai_base_url, ROLES + AGENTS), database_url=db,
                          ledger_flush_interval=0.05, admin_key=ADMIN)
    ids = make_decisions(router, upstream)
    with httpx.Client(base_url=router.url, timeout=10) as http:
        assert http.get("/admin/audit").status_code == 401
        deadline = time.monotonic() + 5
        while True:  # written within a flush interval
            body = http.get("/admin/audit", params={"agent": "ops-bot", "action": "stripped"},
                            headers={"authorization": f"Bearer {ADMIN}"}).json()
            if len(body["data"]) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        verified = http.get("/admin/audit/verify", headers={"authorization": f"Bearer {ADMIN}"}).json()
        assert verified["ok"] is True and verified["checked"] >= 8
    assert len(body["data"]) == 4
    assert {row["tool"] for row in body["data"]} == {"read_secrets", "write_file"}
    assert {row["request_id"] for row in body["data"]} == set(ids)
    router.stop()

    listed = run_cli("audit", "list", "--tool", "read_secrets", "--format", "json", url=db)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and all(row["tool"] == "read_secrets" and row["role"] == "ops" for row in rows)
    assert rows[0]["seq"] > rows[1]["seq"]  # newest first
    assert json.loads(run_cli("audit", "list", "--role", "shadow", "--format", "json", url=db).stdout)[0][
        "action"] == "would_strip"
    future = run_cli("audit", "list", "--from", "2999-01-01", "--format", "json", url=db)
    assert json.loads(future.stdout) == []
    today = run_cli("audit", "list", "--from", time.strftime("%Y-%m-%d", time.gmtime()), "--limit", "3", url=db)
    assert today.returncode == 0 and len(today.stdout.strip().splitlines()) == 2 + 3  # header, rule, 3 rows
    assert run_cli("audit", "list", "--from", "yesterday", url=db).returncode == 2


def test_replicas_appending_at_once_keep_one_linear_chain(db: str) -> None:
    """Several writers (as several replicas would) append concurrently; the chain stays whole."""

    def writer(number: int) -> None:
        database = Database(db)
        try:
            for batch in range(5):
                record = UsageRecord(ts=time.time(), day="2026-01-01", kind="request", request_id=f"r{number}-{batch}",
                                     attempt=0, agent=None, role=None, rule=None, requested_model=None,
                                     deployment=None, provider=None, model=None, status="refused", http_status=401,
                                     error=None, latency_ms=1.0)
                audit = [{"ts": time.time(), "request_id": f"r{number}-{batch}", "agent": f"a{number}",
                          "tool": f"t{i}", "action": "allowed"} for i in range(3)]
                write_batch(database, [FinishedRequest([record.row()], audit)])
        finally:
            database.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [row["seq"] for row in events(db)] == list(range(1, 4 * 5 * 3 + 1))
    result = run_cli("audit", "verify", url=db)
    assert result.returncode == 0 and "60 events verified" in result.stdout, result.stderr
