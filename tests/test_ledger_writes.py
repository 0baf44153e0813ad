"""The ledger writer's batches as the database receives them, on SQLite and on a real PostgreSQL: batches of any
size arrive whole and in order, audit events of any shape are stored as documented and chain with rows written
by earlier versions, and token estimates land on the charged rows only."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from router.config.schema import DeploymentSpec, Prices
from router.ledger.audit_chain import FIELDS, GENESIS, row_hash
from router.ledger.estimate import Estimate
from router.ledger.records import COLUMNS, FinishedRequest, UsageRecord
from router.ledger.writer import write_batch
from router.store.database import Database
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    db_fixture,
    module_db_fixture,
    query,
    run_cli,
    usage_rows,
)


def usage_row(request_id: str, kind: str = "request", attempt: int = 1, **values: Any) -> tuple[Any, ...]:
    record = UsageRecord(ts=time.time(), day="2026-01-01", kind=kind, request_id=request_id, attempt=attempt,
                         agent="a", role="r", rule=None, requested_model="m", deployment="d", provider="p",
                         model="up", status="ok", http_status=200 if kind == "request" else None, error=None,
                         latency_ms=1.5, **values)
    return record.row()


def write(url: str, batch: list[FinishedRequest]) -> None:
    database = Database(url)
    try:
        write_batch(database, batch)
    finally:
        database.close()


def test_batches_of_any_size_arrive_whole_and_in_order(db: str) -> None:
    """Large batches go out in several statements (and odd remainders in smaller ones): no row lost or reordered."""
    sent = []
    for size in (1, 3, 255, 256, 257, 700):
        batch = [FinishedRequest([usage_row(f"r{size}-{i}")]) for i in range(size)]
        write(db, batch)
        sent += [f"r{size}-{i}" for i in range(size)]
    assert [row["request_id"] for row in usage_rows(db)] == sent


def test_audit_events_of_any_shape_are_stored_as_documented_and_verify(db: str) -> None:
    now = time.time()
    full = {"ts": now, "request_id": "q1", "agent": "a", "role": "r", "model": "m", "tool": "search",
            "action": "allowed", "stage": "request", "rule": "allow:search", "reason": "allowed", "policy_version": "v"}
    odd = [
        full,
        {**full, "ts": int(now), "tool": 42},  # an int ts; a non-text value is stored as text
        {"request_id": "q2", "action": "auth_failed", "ts": "not a time"},  # fields missing, ts unusable
        {**full, "ts": math.nan, "attempt": 2, "detail": {"b": 1, "a": [1, 2]}},  # unknown keys go to extra
    ]
    # The chain starts with a row as an earlier writer stored it (rounded with round(ts, 6)).
    first = {name: full.get(name) for name in FIELDS}
    first.update(seq=1, ts=round(now - 1, 6), extra=None)
    digest = row_hash(GENESIS, first)
    query(db, f"INSERT INTO audit_events ({', '.join(FIELDS)}, prev_hash, hash) "
              f"VALUES ({', '.join('?' * (len(FIELDS) + 2))})", (*first.values(), GENESIS, digest))
    query(db, "INSERT INTO audit_head (id, seq, hash) VALUES (1, 1, ?)", (digest,))
    write(db, [FinishedRequest([usage_row("q1")], odd[:2]), FinishedRequest([], odd[2:])])

    rows = query(db, "SELECT * FROM audit_events ORDER BY seq")
    assert [row["seq"] for row in rows] == [1, 2, 3, 4, 5]
    stored = rows[1:]
    assert math.isclose(stored[0]["ts"], round(now, 6), rel_tol=0, abs_tol=3e-7)  # to the microsecond (1 ulp)
    assert [row["extra"] for row in stored[:3]] == [None, None, None]
    assert stored[1]["tool"] == "42" and stored[1]["ts"] == float(int(now))
    assert stored[2]["agent"] is None and stored[2]["action"] == "auth_failed"
    assert abs(stored[2]["ts"] - time.time()) < 60 and abs(stored[3]["ts"] - time.time()) < 60
    assert json.loads(stored[3]["extra"]) == {"attempt": 2, "detail": {"a": [1, 2], "b": 1}}
    assert stored[3]["extra"].index('"attempt"') < stored[3]["extra"].index('"detail"')  # sorted keys
    result = run_cli("audit", "verify", url=db)
    assert result.returncode == 0 and "5 events verified" in result.stdout, result.stdout + result.stderr


def test_estimated_tokens_land_on_the_request_row_and_the_last_attempt_only(db: str) -> None:
    deployment = DeploymentSpec(provider="p", model="gpt-4o-mini",
                                prices=Prices(input_per_million=1, output_per_million=2))
    rows = [usage_row("e1", attempt=2), usage_row("e1", "attempt", 1, price_known=1),
            usage_row("e1", "attempt", 2, price_known=1)]
    finished = FinishedRequest(rows, estimate=Estimate(payload={"messages": [{"role": "user", "content": "Hi"}]},
                                                       model="gpt-4o-mini", text="Hello there, how are you?"),
                               deployment=deployment)
    before = list(rows)
    finished.resolve_estimate()
    write(db, [finished])
    request, failed, served = usage_rows(db)
    assert request["kind"] == "request" and failed["attempt"] == 1 and served["attempt"] == 2
    for row in (request, served):
        assert row["estimated"] == 1 and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        assert row["cost_nano"] == row["prompt_tokens"] * 1000 + row["completion_tokens"] * 2000
        assert row["price_known"] == 1
    assert (failed["estimated"], failed["prompt_tokens"], failed["cost_nano"]) == (0, 0, 0)
    charged = {"prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano", "price_known", "estimated"}
    for row, original in zip((request, failed, served), before, strict=True):
        assert {name: row[name] for name in COLUMNS if name not in charged} == \
            {name: value for name, value in zip(COLUMNS, original, strict=True) if name not in charged}
