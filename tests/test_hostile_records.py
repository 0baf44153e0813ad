"""No request vanishes from the records: hostile values from callers and upstreams (NUL, lone surrogates, 64 KB
strings, a forged escape marker, numbers beyond 64 bits) are stored escaped and marked, a batch the database
refuses is bisected so every request is still written, a record that truly cannot be stored is counted and
logged, and a flood of bad keys writes a bounded number of rows. Real router, fake upstream, SQLite and a real
PostgreSQL; proven with ``usage report`` and ``audit verify``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import orjson
import pytest

from router.context import RequestContext
from router.errors import AuthenticationFailed
from router.ledger.records import COLUMNS, FinishedRequest, UsageRecord
from router.ledger.refusals import RefusalTally
from router.ledger.storable import MARK, MAX_CHARS, unescaped
from router.ledger.writer import write_batch
from router.store.database import Database
from tests.fakes.behaviours import Error, ToolCalls, openai_error
from tests.harness import wait_until
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    MESSAGES,
    db_fixture,
    ledger_config,
    module_db_fixture,
    query,
    run_cli,
    usage_rows,
)
from tests.policy_helpers import ROLES, agent_key, agents_yaml, snapshot, tool

AGENTS = agents_yaml(("ops-bot", "ops"))
LONG = "x" * 65536
HOSTILE = ["nul\x00inside", LONG, MARK + "forged", "back\\slash\x00" + "é" * 10]
"""Text no caller should be able to use to erase or forge a record."""
TEXT_USAGE_COLUMNS = ("day", "kind", "request_id", "agent", "role", "rule", "requested_model", "deployment",
                      "provider", "model", "status", "error", "policy_outcome", "source")
TEXT_AUDIT_COLUMNS = ("request_id", "agent", "role", "model", "tool", "action", "stage", "rule", "reason",
                      "policy_version", "extra")


@pytest.fixture
def router(upstream: Any, start_router: Any, db: str) -> Any:
    return start_router(ledger_config(upstream.openai_base_url, ROLES + AGENTS), database_url=db,
                        ledger_flush_interval=30, max_tool_name_chars=100_000)  # hostile names reach policy


def post(http: httpx.Client, body: dict[str, Any] | bytes, key: str | None = agent_key("ops-bot"),
         **headers: str | bytes) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json", **headers})


def report_totals(url: str) -> dict[str, Any]:
    result = run_cli("usage", "report", "--format", "json", url=url)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["totals"])


def assert_chain_intact(url: str) -> int:
    result = run_cli("audit", "verify", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stdout.split("intact: ")[1].split()[0])


def assert_storable(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """What was stored has no NUL and is bounded, whatever was sent."""
    for row in rows:
        for column in columns:
            value = row[column]
            assert value is None or ("\x00" not in value and len(value) < MAX_CHARS * 7), (column, value[:80])


def assert_marked(stored: str, original: str) -> None:
    assert stored.startswith(MARK), stored[:80]
    text, cut = unescaped(stored)
    assert text == original[:MAX_CHARS] and cut == max(0, len(original) - MAX_CHARS)


def test_hostile_values_are_stored_marked_and_every_request_is_recorded(router: Any, upstream: Any,
                                                                        db: str) -> None:
    ids, http = [], router.http()

    def sent(response: httpx.Response, status: int) -> None:
        assert response.status_code == status, response.text[:300]
        ids.append(response.headers["x-agent-router-request-id"])

    # Tool names offered by the caller: refused by the policy, audited under the name as sent.
    sent(post(http, {"model": "paid", "messages": MESSAGES, "tools": [tool(name) for name in HOSTILE]}), 200)
    # A lone surrogate (raw JSON bytes): refused as invalid JSON, and recorded.
    sent(post(http, b'{"model": "paid", "messages": [{"role": "user", "content": "hi"}], '
                    b'"tools": [{"type": "function", "function": {"name": "a\\ud800b"}}]}'), 400)
    # Models nobody serves: refused, their names kept in the usage row and in the error text.
    for model in HOSTILE:
        sent(post(http, {"model": model, "messages": MESSAGES}), 404)
    # user and metadata: passed on, the request recorded.
    sent(post(http, {"model": "paid", "messages": MESSAGES, "user": "u\x00" + LONG,
                     "metadata": {"k": "v\x00" + LONG}}), 200)
    # Request ids the router does not accept are replaced; the record carries the id the client got.
    for request_id in (b"r" * 129, b"r" * 16384, b"id with spaces", "ok-id-\u00e9".encode()):
        response = post(http, {"model": "paid", "messages": MESSAGES}, **{"x-request-id": request_id})
        assert response.headers["x-request-id"].encode() != request_id
        sent(response, 200)
    # An upstream error whose message is hostile, and tool calls under hostile names from the upstream.
    upstream.queue("up-priced", Error(400, openai_error("upstream says " + "\x00".join(HOSTILE))))
    sent(post(http, {"model": "paid", "messages": MESSAGES}), 400)
    upstream.queue("up-priced", ToolCalls(calls=[(name, "{}") for name in HOSTILE]))
    sent(post(http, {"model": "paid", "messages": MESSAGES, "tools": [tool("search")]}), 200)
    router.stop()

    requests = usage_rows(db, "request")
    assert sorted(row["request_id"] for row in requests) == sorted(ids)
    assert report_totals(db)["requests"] == len(ids)
    events = query(db, "SELECT * FROM audit_events ORDER BY seq")
    assert assert_chain_intact(db) == len(events)
    assert_storable(usage_rows(db), TEXT_USAGE_COLUMNS)
    assert_storable(events, TEXT_AUDIT_COLUMNS)

    offered = {row["tool"] for row in events if row["request_id"] == ids[0]}
    assert "nul\x00inside" not in offered
    for name in HOSTILE:
        [stored] = [tool for tool in offered if unescaped(tool)[0] == name[:MAX_CHARS]]
        assert_marked(stored, name)
    called = {row["tool"] for row in events if row["request_id"] == ids[-1] and row["stage"] == "response"}
    assert len(called) == len(HOSTILE) and all(tool.startswith(MARK) for tool in called)
    by_id = {row["request_id"]: row for row in requests}
    for number, model in enumerate(HOSTILE, start=2):
        assert_marked(by_id[ids[number]]["requested_model"], model)
    errors = [row["error"] for row in usage_rows(db, "attempt") if row["request_id"] == ids[-2]]
    assert errors and all(error.startswith(MARK) and "\\x00" in error for error in errors)


def test_a_batch_the_database_refuses_is_bisected_and_every_request_written(router: Any, upstream: Any,
                                                                            db: str) -> None:
    """One request among many carries a value a database rule refuses (a 600-character model name, against a
    rule allowing 400): the batch is split, the others are written as they are, that one in its strict form;
    the audit chain stays one intact chain."""
    client = router.client(api_key=agent_key("ops-bot"))
    with usage_rows_refused(db, "length({row}requested_model) > 400"):
        for number in range(7):
            if number == 4:
                with pytest.raises(openai.NotFoundError):
                    client.chat.completions.create(model="m" * 600, messages=MESSAGES)
                continue
            client.chat.completions.create(model="paid", messages=MESSAGES, tools=[tool("search"), tool("rm_rf")])
        router.stop()

    requests = usage_rows(db, "request")
    assert len(requests) == 7 and report_totals(db)["requests"] == 7
    models = sorted(row["requested_model"] for row in requests)
    assert models[1:] == ["paid"] * 6
    assert models[0].startswith(MARK) and len(models[0]) <= 400 and unescaped(models[0]) == ("m" * 256, 344)
    assert assert_chain_intact(db) == 12  # an allowed and a stripped tool per served request, without a gap


@contextmanager
def usage_rows_refused(url: str, condition: str) -> Iterator[None]:
    """A database rule refusing every usage row that meets ``condition`` (``{row}`` stands for the new row),
    the way an operator's constraint would; removed afterwards."""
    if url.startswith("sqlite"):
        query(url, f"CREATE TRIGGER refuse_rows BEFORE INSERT ON usage_records WHEN {condition.format(row='NEW.')} "
                   "BEGIN SELECT RAISE(ABORT, 'refused by a database rule'); END")
    else:
        query(url, f"ALTER TABLE usage_records ADD CONSTRAINT refuse_rows CHECK (NOT ({condition.format(row='')}))")
    try:
        yield
    finally:
        if url.startswith("sqlite"):
            query(url, "DROP TRIGGER refuse_rows")
        else:
            query(url, "ALTER TABLE usage_records DROP CONSTRAINT refuse_rows")


def test_a_record_refused_even_escaped_is_counted_and_logged_never_silent(upstream: Any, start_router: Any,
                                                                          db: str, caplog: Any) -> None:
    """A database rule refuses one request's records whatever their form: the others are written, that one is
    logged at ERROR with its request id and counted in /readyz."""
    router = start_router(ledger_config(upstream.openai_base_url), database_url=db, ledger_flush_interval=0.05,
                          admin_key="adm")
    http = router.http(headers={"x-admin-key": "adm"})  # /readyz shows its checks to the admin key only
    with usage_rows_refused(db, "{row}requested_model = 'known'"):
        caplog.set_level(logging.ERROR, logger="agent_router.ledger")
        client = router.client()
        client.chat.completions.create(model="paid", messages=MESSAGES)
        refused = client.chat.completions.with_raw_response.create(model="known", messages=MESSAGES)
        client.chat.completions.create(model="paid", messages=MESSAGES)
        assert wait_until(lambda: "could not be stored" in http.get("/readyz").json()["checks"]["ledger"], 10)
        assert http.get("/readyz").json()["checks"]["ledger"] == \
            "degraded: 1 requests' records could not be stored (see the ERROR log)"
        assert wait_until(lambda: len(usage_rows(db, "request")) == 2)
        request_id = refused.headers["x-request-id"]
        assert any(request_id in record.getMessage() and "CANNOT BE STORED" in record.getMessage()
                   for record in caplog.records)
        router.stop()
    assert {row["requested_model"] for row in usage_rows(db, "request")} == {"paid"}


def test_a_database_refusing_every_record_keeps_them_queued_until_it_accepts(upstream: Any, start_router: Any,
                                                                             db: str) -> None:
    """Not the records' fault (here a rule refusing every row): nothing is counted as unwritable, nothing lost."""
    router = start_router(ledger_config(upstream.openai_base_url), database_url=db, ledger_flush_interval=0.05,
                          admin_key="adm")
    http = router.http(headers={"x-admin-key": "adm"})
    with usage_rows_refused(db, "{row}ts >= 0"):
        for _ in range(3):
            router.client().chat.completions.create(model="paid", messages=MESSAGES)
        assert wait_until(lambda: "refuses even a plain record" in http.get("/readyz").json()["checks"]["ledger"],
                          10)
        assert usage_rows(db) == []
    assert wait_until(lambda: len(usage_rows(db, "request")) == 3, 15)
    assert wait_until(lambda: http.get("/readyz").json()["checks"]["ledger"].startswith("ok ("))
    router.stop()


def test_a_flood_of_bad_keys_writes_one_row_per_source_reason_and_minute(router: Any, db: str) -> None:
    flood, http = 150, router.http()
    for number in range(flood):
        key = None if number % 3 == 0 else f"sk-not-a-key-{number}"
        assert post(http, {"model": "paid", "messages": MESSAGES}, key=key).status_code == 401
    for _ in range(2):  # a known agent's refusals are still recorded one by one
        assert post(http, {"model": "no-such-model", "messages": MESSAGES}).status_code == 404
    router.stop()

    rows = usage_rows(db, "request")
    counted = [row for row in rows if row["source"] is not None]
    assert 2 <= len(counted) <= 4  # missing and unknown key; 4 when the flood straddled a minute
    assert {row["source"] for row in counted} == {"127.0.0.1"}
    assert sum(row["requests"] for row in counted) == flood
    assert all((row["status"], row["http_status"], row["agent"]) == ("refused", 401, None) for row in counted)
    known = [row for row in rows if row["source"] is None]
    assert [(row["agent"], row["requests"], row["http_status"]) for row in known] == [("ops-bot", 1, 404)] * 2
    totals = report_totals(db)
    assert (totals["requests"], totals["refused"], totals["unauthenticated"]) == (flood + 2, flood + 2, flood)

    events = query(db, "SELECT * FROM audit_events ORDER BY seq")
    assert len(events) == len(counted) and assert_chain_intact(db) == len(events)
    assert sum(orjson.loads(event["extra"])["requests"] for event in events) == flood
    assert any(event["reason"].startswith("unknown API key: ") and "from 127.0.0.1" in event["reason"]
               for event in events)
    by_source = run_cli("usage", "report", "--group-by", "source", "--format", "json", url=db)
    groups = {group["source"]: group for group in json.loads(by_source.stdout)["groups"]}
    assert groups["127.0.0.1"]["unauthenticated"] == flood and groups[None]["requests"] == 2


def test_hostile_values_in_every_column_written_directly_verify_and_read_back(db: str) -> None:
    """Every text column of a usage row and of an audit event (reason, rule, extra, policy version...) at once,
    in one batch with plain requests: all stored, marked, and the chain verifies what is stored."""
    hostile = [*HOSTILE, "a\ud800b", "\udfff"]
    texts = {name: hostile[number % len(hostile)] for number, name in enumerate(TEXT_USAGE_COLUMNS)}
    row = UsageRecord(**{**texts, "ts": time.time(), "attempt": 0, "http_status": 200, "latency_ms": 1.0,
                         "requests": 1}).row()
    event = {name: hostile[number % len(hostile)] for number, name in enumerate(TEXT_AUDIT_COLUMNS[:-1])}
    event.update(ts=time.time(), detail="\x00" + LONG)
    plain = UsageRecord(ts=time.time(), day="2026-01-01", kind="request", request_id="plain", attempt=0, agent="a",
                        role=None, rule=None, requested_model="m", deployment=None, provider=None, model=None,
                        status="ok", http_status=200, error=None, latency_ms=1.0).row()
    database = Database(db)
    try:
        write_batch(database, [FinishedRequest([plain]), FinishedRequest([row], [event]), FinishedRequest([plain])])
    finally:
        database.close()
    stored_rows = usage_rows(db)
    assert [stored["request_id"] for stored in stored_rows][::2] == ["plain", "plain"]
    for name in TEXT_USAGE_COLUMNS:
        assert_marked(stored_rows[1][name], texts[name])
    [stored_event] = query(db, "SELECT * FROM audit_events")
    for name in TEXT_AUDIT_COLUMNS[:-1]:
        assert_marked(stored_event[name], event[name])
    assert stored_event["extra"].startswith(MARK) and "\\\\u0000" in stored_event["extra"]
    assert assert_chain_intact(db) == 1


def refusal(request_id: str, client: str | None, reason: str = "unknown API key") -> RequestContext:
    ctx = RequestContext(request_id=request_id, snapshot=snapshot(), payload={}, stream=False, requested_model="",
                         client=client)
    ctx.audit_events.append({"ts": time.time(), "request_id": request_id, "agent": None, "reason": reason})
    ctx.error = AuthenticationFailed("the API key is not known to this router")
    return ctx


def test_refusal_counts_are_bounded_per_minute_and_handed_over_when_the_minute_is_over() -> None:
    tally, minute = RefusalTally(max_sources=3), 29_000_000 * 60.0
    for number in range(50):
        tally.count(refusal(f"r{number}", f"10.0.0.{number % 10}"), minute + 1)
    tally.count(refusal("missing", None, "missing API key"), minute + 2)
    tally.count(refusal("next", "10.0.0.1"), minute + 61)
    assert len(tally) == 6  # 3 sources, "other" per reason (2), and the next minute's one
    assert tally.take(minute + 59) == []
    first = tally.take(minute + 60)
    counts = {(item.rows[0][COLUMNS.index("source")], item.audit_events[0]["reason"].split(":")[0]):
              item.rows[0][COLUMNS.index("requests")] for item in first}
    assert counts == {("10.0.0.0", "unknown API key"): 5, ("10.0.0.1", "unknown API key"): 5,
                      ("10.0.0.2", "unknown API key"): 5, ("other", "unknown API key"): 35,
                      ("other", "missing API key"): 1}
    assert all(item.rows[0][COLUMNS.index("ts")] == minute for item in first)
    [last] = tally.take(None)
    assert last.request_id == "next" and len(tally) == 0
