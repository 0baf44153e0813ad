"""Records of MCP tool calls, on SQLite and a real PostgreSQL: the real :class:`router.ledger.Ledger` writes each
call's ``mcp_calls`` row and its audit events in the model plane's batches and hash chain; a shutdown with the
database down spills them and the next start writes each exactly once; hostile values are stored marked; and
``agent-router mcp report`` and ``GET /admin/mcp/usage`` read them, while the finance report never does.

The gateway does not exist yet: the records are built here as it will build them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.ledger import Ledger
from router.ledger.audit_chain import ChainAppender
from router.ledger.storable import MARK, unescaped
from router.mcp.records import ToolCallRecord, arguments_fields
from router.settings import Settings
from router.store.database import Database
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    MESSAGES,
    db_fixture,
    ledger_config,
    module_db_fixture,
    query,
    run_cli,
)

pytestmark = pytest.mark.timeout(120)

ADMIN = "admin-secret"
DOWN = "postgresql://postgres@127.0.0.1:1/nowhere"
"""A database nobody answers for (connection refused at once)."""


def call(request_id: str, *, server: str = "github", tool: str = "create_issue", decision: str = "allowed",
         outcome: str = "ok", latency_ms: float = 10.0, result_bytes: int = 100, ts: float | None = None,
         agent: str | None = "ops-bot", **values: Any) -> ToolCallRecord:
    sha, kept, size = arguments_fields({"title": "hi", "n": 1}, keep=True, cap=1000)
    fields: dict[str, Any] = {
        "ts": time.time() if ts is None else ts, "request_id": request_id, "session": "s-1", "agent": agent,
        "role": "ops", "server": server, "method": "tools/call", "tool": tool, "arguments_sha256": sha,
        "arguments": kept, "arguments_bytes": size, "decision": decision, "rule": "allow:*", "reason": None,
        "outcome": outcome, "error": None, "latency_ms": latency_ms, "result_bytes": result_bytes,
        "credential": "ops", "policy_version": "v1"}
    fields.update(values)
    return ToolCallRecord(**fields)


def event(record: ToolCallRecord, action: str | None = None) -> dict[str, Any]:
    """The audit event the gateway emits with a call (see the brief's shape)."""
    return {"ts": record.ts, "request_id": record.request_id, "agent": record.agent, "role": record.role,
            "model": None, "tool": f"{record.server}:{record.tool}",
            "action": action or ("blocked" if record.decision == "denied" else record.decision), "stage": "mcp",
            "rule": record.rule, "reason": record.reason, "policy_version": record.policy_version,
            "extra": {"server": record.server, "method": record.method, "session": record.session}}


def settings(url: str, tmp_path: Path, **values: Any) -> Settings:
    defaults: dict[str, Any] = {"database_url": url, "ledger_flush_interval": 0.05, "ledger_drain_timeout": 5.0,
                                "ledger_spill_file": str(tmp_path / "spill.jsonl"), "database_connect_timeout": 1.0}
    return Settings(**{**defaults, **values})


def record_all(setup: Settings, calls: list[tuple[ToolCallRecord, list[dict[str, Any]]]]) -> Ledger:
    """Start a real Ledger, queue every call, close it (drain, or spill when the database is down)."""
    async def scenario() -> Ledger:
        database = Database(setup.database_url, setup.database_connect_timeout)
        ledger = Ledger(database, setup, ChainAppender())
        await ledger.start()
        try:
            for record, events in calls:
                ledger.record_tool_call(record, events)
        finally:
            await ledger.close()
            database.close()
        return ledger

    return asyncio.run(scenario())


def mcp_rows(url: str) -> list[dict[str, Any]]:
    return query(url, "SELECT * FROM mcp_calls ORDER BY id")


def verified(url: str) -> str:
    result = run_cli("audit", "verify", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_tool_call_leaves_its_row_and_its_audit_events_in_the_chain(db: str, tmp_path: Path) -> None:
    allowed, denied = call("mcp-1"), call("mcp-2", tool="delete_repo", decision="denied", outcome="refused",
                                          rule="deny:delete_*", reason="deleting repositories is not allowed")
    record_all(settings(db, tmp_path), [(allowed, [event(allowed)]), (denied, [event(denied)])])

    rows = mcp_rows(db)
    assert [(r["request_id"], r["server"], r["tool"], r["decision"], r["outcome"]) for r in rows] == [
        ("mcp-1", "github", "create_issue", "allowed", "ok"), ("mcp-2", "github", "delete_repo", "denied", "refused")]
    first = rows[0]
    assert first["day"] == time.strftime("%Y-%m-%d", time.gmtime(allowed.ts))
    assert (first["arguments_sha256"], first["arguments"]) == (allowed.arguments_sha256, allowed.arguments)
    assert (first["session"], first["credential"], first["latency_ms"], first["result_bytes"]) == ("s-1", "ops",
                                                                                                 10.0, 100)
    events = query(db, "SELECT * FROM audit_events ORDER BY seq")
    assert [(e["request_id"], e["tool"], e["action"], e["stage"]) for e in events] == [
        ("mcp-1", "github:create_issue", "allowed", "mcp"), ("mcp-2", "github:delete_repo", "blocked", "mcp")]
    assert json.loads(events[1]["extra"]) == {"server": "github", "method": "tools/call", "session": "s-1"}
    assert "2 events verified" in verified(db)

    listed = run_cli("audit", "list", "--tool", "github:delete_repo", "--format", "json", url=db)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert (entry["request_id"], entry["action"], entry["stage"], entry["rule"]) == (
        "mcp-2", "blocked", "mcp", "deny:delete_*")
    assert json.loads(entry["extra"])["server"] == "github"


def test_tool_calls_share_the_batches_and_chain_of_chat_requests(upstream: Any, start_router: Any, db: str,
                                                                 tmp_path: Path) -> None:
    """A chat request's audit events and a tool call's chain into one chain; the finance report is unchanged."""
    router = start_router(ledger_config(upstream.openai_base_url), database_url=db, ledger_flush_interval=0.05)
    tool = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
    router.client().chat.completions.create(model="paid", messages=MESSAGES, tools=[tool])
    router.stop()
    before = run_cli("usage", "report", "--group-by", "agent", "--format", "json", url=db)
    assert before.returncode == 0 and json.loads(before.stdout)["totals"]["requests"] == 1, before.stderr

    records = [call(f"mcp-{i}", decision="would_deny" if i % 2 else "allowed") for i in range(30)]
    record_all(settings(db, tmp_path), [(record, [event(record)]) for record in records])

    after = run_cli("usage", "report", "--group-by", "agent", "--format", "json", url=db)
    assert after.returncode == 0 and json.loads(after.stdout) == json.loads(before.stdout)
    assert len(query(db, "SELECT id FROM usage_records WHERE request_id LIKE ?", ("mcp-%",))) == 0
    stages = [row["stage"] for row in query(db, "SELECT stage FROM audit_events ORDER BY seq")]
    assert stages[0] != "mcp" and stages.count("mcp") == 30
    assert f"{len(stages)} events verified" in verified(db)


def test_a_shutdown_with_the_database_down_spills_tool_calls_and_the_next_starts_write_each_once(
        db: str, tmp_path: Path) -> None:
    records = [call(f"spilled-{i}", latency_ms=float(i)) for i in range(25)]
    down = record_all(settings(DOWN, tmp_path, ledger_drain_timeout=1.0),
                      [(record, [event(record)]) for record in records])
    spill = tmp_path / "spill.jsonl"
    assert down.writer.spilled == 25 and spill.exists()
    lines = [json.loads(line) for line in spill.read_bytes().splitlines()]
    assert [line["tool_calls"][0]["request_id"] for line in lines] == [r.request_id for r in records]
    kept = tmp_path / "spill.copy"
    shutil.copy(spill, kept)

    already = call("stored-first")
    record_all(settings(db, tmp_path), [(already, [event(already)])])  # the start that replays the spill
    assert not spill.exists()
    ids = [row["request_id"] for row in mcp_rows(db)]
    assert sorted(ids) == sorted([r.request_id for r in records] + ["stored-first"])

    # A process that died mid-replay leaves its claim behind: writing it again doubles nothing.
    shutil.copy(kept, tmp_path / "spill.jsonl.replaying-1")
    record_all(settings(db, tmp_path), [])
    assert not (tmp_path / "spill.jsonl.replaying-1").exists()
    assert sorted(row["request_id"] for row in mcp_rows(db)) == sorted(ids)
    events = [row["request_id"] for row in query(db, "SELECT request_id FROM audit_events")]
    assert sorted(events) == sorted(ids)
    assert [row["latency_ms"] for row in mcp_rows(db) if row["request_id"].startswith("spilled-")] == \
        [float(i) for i in range(25)]
    verified(db)


def test_the_queue_bound_holds_for_tool_calls(tmp_path: Path) -> None:
    records = [call(f"bound-{i}") for i in range(8)]
    down = record_all(settings(DOWN, tmp_path, ledger_drain_timeout=0.5, ledger_max_pending=5),
                      [(record, [event(record)]) for record in records])
    assert (down.writer.dropped, down.writer.spilled) == (3, 5)
    spilled = [json.loads(line)["tool_calls"][0]["request_id"] for line in (tmp_path / "spill.jsonl").open("rb")]
    assert spilled == [f"bound-{i}" for i in range(3, 8)]  # the oldest were dropped


def test_hostile_values_never_break_a_batch_or_erase_a_record(db: str, tmp_path: Path) -> None:
    huge = "x" * 100_000
    hostile = call("hostile\x00id", tool="to\x00ol", error="bad \ud800 surrogate", arguments=huge,
                   reason=f"{MARK}forged", session="\ud83d")
    too_big = call("too-big", result_bytes=2**70, arguments_bytes=-(2**70))  # beyond 64 bits: the strict form
    plain = [call(f"plain-{i}") for i in range(5)]
    batch = [(record, [event(record)]) for record in [plain[0], hostile, plain[1], too_big, *plain[2:]]]
    events = batch[1][1]
    events[0]["reason"] = "NUL \x00 and \udfff"
    ledger = record_all(settings(db, tmp_path), batch)
    assert ledger.writer.unwritable == 0

    rows = {row["request_id"]: row for row in mcp_rows(db)}
    assert len(rows) == 7 and {f"plain-{i}" for i in range(5)} <= set(rows)
    stored = next(row for key, row in rows.items() if key.startswith(MARK) and "hostile" in key)
    assert unescaped(stored["request_id"]) == ("hostile\x00id", 0)
    assert unescaped(stored["tool"]) == ("to\x00ol", 0)
    assert unescaped(stored["error"]) == ("bad \ud800 surrogate", 0)
    assert unescaped(stored["reason"]) == (f"{MARK}forged", 0)
    text, cut = unescaped(stored["arguments"])
    assert cut > 0 and text == huge[:len(text)] and len(stored["arguments"]) < 5000
    assert rows["too-big"]["result_bytes"] == 2**53 and rows["too-big"]["arguments_bytes"] == -(2**53)
    assert len(query(db, "SELECT seq FROM audit_events")) == 7
    verified(db)


def report(db: str, *args: str) -> dict[str, Any]:
    result = run_cli("mcp", "report", *args, "--format", "json", url=db)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def fill_for_reports(db: str, tmp_path: Path) -> None:
    """github:create_issue 20 calls at 1..20 ms (2 denied, 1 rate limited, 3 would_deny, 2 errors);
    slack:post 1 call at 7.5 ms; one old call (2020) outside --since."""
    records = []
    for i in range(1, 21):
        decision = "denied" if i <= 2 else "rate_limited" if i == 3 else "would_deny" if i <= 6 else "allowed"
        outcome = "refused" if i <= 3 else "tool_error" if i == 7 else "timeout" if i == 8 else "ok"
        records.append(call(f"r{i}", latency_ms=float(21 - i), decision=decision, outcome=outcome,
                            result_bytes=0 if i <= 3 else 10))
    records.append(call("s1", server="slack", tool="post", latency_ms=7.5, result_bytes=5, agent=None))
    records.append(call("old", ts=1_577_836_800.0, latency_ms=999.0))
    record_all(settings(db, tmp_path), [(record, [event(record)]) for record in records])


def test_mcp_report_counts_decisions_errors_latency_and_bytes_per_group(db: str, tmp_path: Path) -> None:
    fill_for_reports(db, tmp_path)
    body = report(db, "--since", "2026-01-01")
    assert body["object"] == "mcp_report" and body["group_by"] == ["server", "tool"]
    github, slack = body["groups"]
    assert {k: github[k] for k in ("server", "tool", "calls", "allowed", "denied", "would_deny", "rate_limited",
                                   "errors", "result_bytes")} == {
        "server": "github", "tool": "create_issue", "calls": 20, "allowed": 14, "denied": 2, "would_deny": 3,
        "rate_limited": 1, "errors": 2, "result_bytes": 170}
    assert (github["p50_latency_ms"], github["p95_latency_ms"]) == (10.0, 19.0)  # nearest rank: 10th, 19th of 20
    assert (slack["calls"], slack["p50_latency_ms"], slack["p95_latency_ms"]) == (1, 7.5, 7.5)
    totals = body["totals"]
    assert (totals["calls"], totals["result_bytes"], totals["p50_latency_ms"], totals["p95_latency_ms"]) == (
        21, 175, 10.0, 19.0)  # 21 latencies: 1..20 and 7.5 -> 11th is 10, 20th is 19

    everything = report(db, "--by", "agent")
    assert [(g["agent"], g["calls"]) for g in everything["groups"]] == [("ops-bot", 21), (None, 1)]
    assert everything["totals"]["p95_latency_ms"] == 20.0
    by_outcome = report(db, "--by", "decision,outcome", "--since", "2026-01-01")
    assert {(g["decision"], g["outcome"]): g["calls"] for g in by_outcome["groups"]} == {
        ("denied", "refused"): 2, ("rate_limited", "refused"): 1, ("would_deny", "ok"): 3,
        ("allowed", "tool_error"): 1, ("allowed", "timeout"): 1, ("allowed", "ok"): 13}
    assert report(db, "--until", "2021-01-01")["totals"]["calls"] == 1
    assert report(db, "--since", "2100-01-01")["totals"] == {
        "calls": 0, "allowed": 0, "denied": 0, "would_deny": 0, "rate_limited": 0, "unavailable": 0, "errors": 0,
        "result_bytes": 0, "p50_latency_ms": None, "p95_latency_ms": None}

    as_csv = run_cli("mcp", "report", "--since", "2026-01-01", "--format", "csv", url=db)
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert as_csv.returncode == 0 and [(line["server"], line["calls"]) for line in lines] == [("github", "20"),
                                                                                          ("slack", "1")]
    table = run_cli("mcp", "report", "--since", "2026-01-01", url=db)
    assert table.returncode == 0 and table.stdout.splitlines()[-1].split()[:2] == ["TOTAL", "21"]
    wrong = run_cli("mcp", "report", "--by", "colour", url=db)
    assert wrong.returncode == 2 and "colour" in wrong.stderr


def test_admin_mcp_usage_matches_the_cli(start_router: Any, db: str, tmp_path: Path) -> None:
    fill_for_reports(db, tmp_path)
    router = start_router(None, database_url=db, admin_key=ADMIN)
    auth = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=router.url, timeout=10) as http:
        assert http.get("/admin/mcp/usage").status_code == 401
        answer = http.get("/admin/mcp/usage", params={"since": "2026-01-01", "by": "server,tool,agent"},
                          headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json() == report(db, "--since", "2026-01-01", "--by", "server,tool,agent")
        assert http.get("/admin/mcp/usage", params={"from": "2026-01-01"}, headers=auth).json() == report(
            db, "--since", "2026-01-01")
        as_csv = http.get("/admin/mcp/usage", params={"format": "csv"}, headers=auth)
        assert as_csv.headers["content-type"].startswith("text/csv") and as_csv.text.startswith("server,tool,")
        refused = http.get("/admin/mcp/usage", params={"by": "colour"}, headers=auth)
        assert refused.status_code == 400 and "colour" in refused.json()["error"]["message"]
        listed = http.get("/admin/audit", params={"tool": "slack:post"}, headers=auth).json()["data"]
        assert [(row["request_id"], row["stage"]) for row in listed] == [("s1", "mcp")]
