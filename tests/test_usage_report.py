"""Finance reports: the CLI and ``GET /admin/usage`` over a ledger filled by real requests; totals reconcile
exactly with the per-request records and with what the fake upstream served, token for token."""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.behaviours import Error, Text
from tests.harness import RouterProcess, write_config
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

ADMIN = "admin-secret"
AGENTS = agents_yaml(("ops-bot", "ops"))
REPORTED = 8
"""Answers in :func:`traffic` whose upstream reported usage (11 prompt + 7 completion tokens each)."""


def traffic(router: Any, upstream: Any) -> None:
    """A finance-shaped mix: priced, unpriced, fallback, stream, no usage, stripped tools, refused."""
    client = router.client()
    for _ in range(3):
        client.chat.completions.create(model="paid", messages=MESSAGES)
    for _ in range(2):
        client.chat.completions.create(model="unknown-price", messages=MESSAGES)
    upstream.always("up-unpriced", Error(500, {"error": {"message": "boom", "type": "server_error"}}))
    client.chat.completions.create(model="fallback", messages=MESSAGES)
    upstream.always("up-unpriced", None)
    list(client.chat.completions.create(model="paid", messages=MESSAGES, stream=True))
    upstream.queue("up-priced", Text(usage=None))
    client.chat.completions.create(model="paid", messages=MESSAGES)
    router.client(api_key=agent_key("ops-bot")).chat.completions.create(
        model="paid", messages=MESSAGES, tools=[tool("search"), tool("write_file")])
    with pytest.raises(openai.AuthenticationError):
        router.client(api_key="sk-nope").chat.completions.create(model="paid", messages=MESSAGES)


@pytest.fixture
def filled(upstream: Any, start_router: Any, db: str) -> Any:
    router = start_router(ledger_config(upstream.openai_base_url, ROLES + AGENTS), database_url=db,
                          ledger_flush_interval=30, admin_key=ADMIN)
    traffic(router, upstream)
    return router


def report(db: str, *args: str) -> dict[str, Any]:
    result = run_cli("usage", "report", *args, "--format", "json", url=db)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_totals_reconcile_with_the_records_and_with_what_the_upstream_served(filled: Any, upstream: Any,
                                                                           db: str) -> None:
    filled.stop()
    totals = report(db)["totals"]
    requests = usage_rows(db, "request")
    exact = [row for row in requests if row["estimated"] == 0]
    assert totals["requests"] == len(requests) == 10
    attempts = usage_rows(db, "attempt")
    failed = [row for row in attempts if row["status"] == "error"]
    assert totals["attempts"] == len(attempts) == 9 + len(failed)  # 9 answers, and the fallback's failures
    assert (totals["errors"], totals["refused"], totals["failed_attempts"]) == (0, 1, len(failed))
    assert failed and all(row["deployment"] == "unpriced" and row["prompt_tokens"] == 0 for row in failed)
    assert totals["prompt_tokens"] == sum(row["prompt_tokens"] for row in exact) == 11 * REPORTED
    assert totals["completion_tokens"] == sum(row["completion_tokens"] for row in exact) == 7 * REPORTED
    assert totals["cost_nano"] == sum(row["cost_nano"] or 0 for row in exact)
    assert totals["cost_nano"] == 6 * round((11 * 2.5 + 7 * 10.0) * 1000)  # six priced answers, in nano-USD
    assert totals["cost_usd"] == f"{totals['cost_nano'] / 1e9:.9f}"
    (estimated,) = [row for row in requests if row["estimated"] == 1]
    assert totals["estimated_requests"] == 1
    assert totals["estimated_prompt_tokens"] == estimated["prompt_tokens"] > 0
    assert totals["estimated_cost_nano"] == estimated["cost_nano"] > 0
    assert totals["unpriced_requests"] == 2
    # every attempt reached the fake upstream, and nothing else did
    assert len(upstream.served()) == totals["attempts"]


def test_group_by_is_combinable_and_groups_add_up_to_the_totals(filled: Any, db: str) -> None:
    filled.stop()
    totals = report(db)["totals"]
    by_deployment = report(db, "--group-by", "deployment")
    groups = {group["deployment"]: group for group in by_deployment["groups"]}
    assert set(groups) == {None, "priced", "unpriced"}
    assert groups["unpriced"]["unpriced_requests"] == 2 and groups["unpriced"]["cost_nano"] == 0
    assert groups["unpriced"]["failed_attempts"] == totals["failed_attempts"] >= 1
    assert groups[None]["refused"] == 1
    for name in ("requests", "attempts", "prompt_tokens", "cost_nano", "estimated_cost_nano"):
        assert sum(group[name] for group in by_deployment["groups"]) == totals[name] == by_deployment["totals"][name]
    combined = report(db, "--group-by", "agent,policy_outcome")
    keys = {(group["agent"], group["policy_outcome"]): group["requests"] for group in combined["groups"]}
    assert keys == {(None, "none"): 1, ("ops-bot", "stripped"): 1, ("test-agent", "none"): 8}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    (day,) = report(db, "--group-by", "day,provider", "--from", today, "--to", today)["groups"][:1]
    assert day["day"] == today
    assert report(db, "--from", "2999-01-01")["totals"]["requests"] == 0
    assert report(db, "--to", "2000-01-01")["totals"]["requests"] == 0


def test_csv_and_table_formats(filled: Any, db: str) -> None:
    filled.stop()
    as_json = report(db, "--group-by", "model")
    text = run_cli("usage", "report", "--group-by", "model", "--format", "csv", url=db)
    assert text.returncode == 0, text.stderr
    rows = list(csv.DictReader(io.StringIO(text.stdout)))
    assert [row["model"] for row in rows] == [group["model"] or "" for group in as_json["groups"]]
    for row, group in zip(rows, as_json["groups"], strict=True):
        assert (int(row["requests"]), row["cost_usd"], row["estimated_cost_usd"]) == \
            (group["requests"], group["cost_usd"], group["estimated_cost_usd"])
    table = run_cli("usage", "report", "--group-by", "model", url=db).stdout.splitlines()
    assert table[0].split()[:3] == ["model", "requests", "errors"]
    assert table[-1].split()[:2] == ["TOTAL", "10"]
    bad = run_cli("usage", "report", "--group-by", "colour", url=db)
    assert bad.returncode == 2 and "colour" in bad.stderr


def test_admin_usage_matches_the_cli(upstream: Any, start_router: Any, db: str) -> None:
    router = start_router(ledger_config(upstream.openai_base_url, ROLES + AGENTS), database_url=db,
                          ledger_flush_interval=0.05, admin_key=ADMIN)
    traffic(router, upstream)
    auth = {"authorization": f"Bearer {ADMIN}"}
    params = {"group_by": "deployment,agent", "from": "2000-01-01"}
    with httpx.Client(base_url=router.url, timeout=10) as http:
        assert http.get("/admin/usage", params=params).status_code == 401
        deadline = time.monotonic() + 5
        while True:
            body = http.get("/admin/usage", params=params, headers=auth).json()
            if body["totals"]["requests"] == 10 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert body == report(db, "--group-by", "deployment,agent", "--from", "2000-01-01")
        as_csv = http.get("/admin/usage", params={**params, "format": "csv"}, headers=auth)
        assert as_csv.headers["content-type"].startswith("text/csv") and as_csv.text.startswith("deployment,agent,")
        refused = http.get("/admin/usage", params={"group_by": "colour"}, headers=auth)
        assert refused.status_code == 400 and "colour" in refused.json()["error"]["message"]


def test_two_replicas_share_one_ledger_and_one_audit_chain(upstream: Any, db: str, tmp_path: Any) -> None:
    config = write_config(ledger_config(upstream.openai_base_url, ROLES + AGENTS), str(tmp_path))
    env = {"AGENT_ROUTER_DATABASE_URL": db, "AGENT_ROUTER_LEDGER_FLUSH_INTERVAL": "0.05"}
    replicas = [RouterProcess(config, env=env).start() for _ in range(2)]
    per_replica = 15
    try:
        def burst(replica: RouterProcess) -> None:
            client = openai.OpenAI(base_url=f"{replica.url}/v1", api_key=agent_key("ops-bot"), max_retries=0,
                                   timeout=30)
            for _ in range(per_replica):
                client.chat.completions.create(model="paid", messages=MESSAGES,
                                               tools=[tool("search"), tool("write_file")])

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(burst, replicas))
    finally:
        for replica in replicas:
            assert replica.stop() in (0, -15), replica.output()
    totals = report(db)["totals"]
    assert totals["requests"] == 2 * per_replica
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (11 * 2 * per_replica, 7 * 2 * per_replica)
    assert len(upstream.served()) == 2 * per_replica
    events = query(db, "SELECT seq FROM audit_events ORDER BY seq")
    assert [row["seq"] for row in events] == list(range(1, 2 * 2 * per_replica + 1))  # allowed + stripped each
    verified = run_cli("audit", "verify", url=db)
    assert verified.returncode == 0, verified.stderr


# -- pure helpers ------------------------------------------------------------------------------------------------
def test_time_bounds_and_group_keys_people_type() -> None:
    from router.ledger.reports import ReportError, parse_group_by
    from router.ledger.timerange import TimeRangeError, parse_bound

    day = parse_bound("2026-11-01")
    assert day == 1_793_491_200.0
    assert parse_bound("2026-11-01", end=True) == day + 86_400  # a date as the end includes that whole day
    assert parse_bound("2026-11-01T12:00:00Z") == day + 43_200
    assert parse_bound("2026-11-01T12:00:00+01:00") == day + 39_600
    assert parse_bound("1793491200") == day and parse_bound(None) is None
    with pytest.raises(TimeRangeError):
        parse_bound("last tuesday")
    assert parse_group_by("model, agent,model") == ["model", "agent"]
    assert parse_group_by("") == []
    with pytest.raises(ReportError, match="colour"):
        parse_group_by("day,colour")
