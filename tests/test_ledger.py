"""The usage ledger end to end: the openai SDK against the router against the fake upstream, records read
back with SQL, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import orjson
import pytest

from router.config.schema import DeploymentSpec, Prices
from router.ledger.cost import cost_usd, to_nano
from router.model_catalog import litellm_package_dir
from tests.backing_services import POSTGRES_URL
from tests.configs import TEST_KEY
from tests.fakes.behaviours import Error, SlowStream, Text
from tests.harness import RouterProcess, write_config
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    MESSAGES,
    PRICED_INPUT,
    PRICED_OUTPUT,
    db_fixture,
    ledger_config,
    module_db_fixture,
    postgres_database,
    query,
    usage_rows,
)

NANO = 1_000_000_000


@pytest.fixture
def router(upstream: Any, start_router: Any, db: str) -> Any:
    return start_router(ledger_config(upstream.openai_base_url), database_url=db, ledger_flush_interval=30)


def priced_nano(prompt: int, completion: int) -> int:
    return round((prompt * PRICED_INPUT / 1e6 + completion * PRICED_OUTPUT / 1e6) * NANO)


def test_a_fallback_leaves_one_request_record_and_one_record_per_attempt(router: Any, upstream: Any,
                                                                        db: str) -> None:
    upstream.always("up-unpriced", Error(500, {"error": {"message": "upstream exploded", "type": "server_error"}}))
    response = router.client().chat.completions.with_raw_response.create(model="fallback", messages=MESSAGES)
    request_id = response.headers["x-request-id"]
    attempts = int(response.headers["x-agent-router-attempts"])
    router.stop()  # a graceful stop drains the queue

    (request,) = usage_rows(db, "request")
    assert request["request_id"] == request_id
    assert (request["status"], request["http_status"], request["attempt"]) == ("ok", 200, attempts)
    assert (request["deployment"], request["provider"], request["model"]) == ("priced", "fake", "up-priced")
    assert (request["agent"], request["role"], request["requested_model"]) == ("test-agent", "tester", "fallback")
    assert (request["prompt_tokens"], request["completion_tokens"], request["cached_tokens"]) == (11, 7, 0)
    assert request["cost_nano"] == priced_nano(11, 7) and request["price_known"] == 1
    assert (request["estimated"], request["stream"], request["policy_outcome"]) == (0, 0, "none")

    tried = usage_rows(db, "attempt")
    assert [row["attempt"] for row in tried] == list(range(1, attempts + 1))
    assert attempts >= 2
    *failed, served = tried
    for row in failed:
        assert (row["deployment"], row["status"], row["prompt_tokens"], row["completion_tokens"]) == \
            ("unpriced", "error", 0, 0)
        assert row["cost_nano"] == 0 and "exploded" in row["error"]
    assert (served["deployment"], served["status"], served["prompt_tokens"], served["completion_tokens"]) == \
        ("priced", "ok", 11, 7)
    assert all(row["request_id"] == request_id for row in tried)


def test_an_unknown_price_is_null_never_zero_and_prices_come_from_config_or_litellm(router: Any, upstream: Any,
                                                                                   db: str) -> None:
    client = router.client()
    for model in ("unknown-price", "paid", "known"):
        client.chat.completions.create(model=model, messages=MESSAGES)
    router.stop()
    rows = {row["deployment"]: row for row in usage_rows(db, "request")}
    assert rows["unpriced"]["cost_nano"] is None and rows["unpriced"]["price_known"] == 0
    assert rows["unpriced"]["prompt_tokens"] == 11
    assert rows["priced"]["cost_nano"] == priced_nano(11, 7) and rows["priced"]["price_known"] == 1
    folder = litellm_package_dir()
    assert folder is not None
    entry = orjson.loads((folder / "model_prices_and_context_window_backup.json").read_bytes())["gpt-4o-mini"]
    expected = round((11 * entry["input_cost_per_token"] + 7 * entry["output_cost_per_token"]) * NANO)
    assert rows["catalog"]["cost_nano"] == expected and expected > 0


def test_stream_usage_is_recorded_and_shown_only_to_a_client_that_asked(router: Any, db: str) -> None:
    client = router.client()
    hidden = list(client.chat.completions.create(model="paid", messages=MESSAGES, stream=True))
    shown = list(client.chat.completions.create(model="paid", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True}))
    assert all(chunk.usage is None for chunk in hidden)
    assert shown[-1].usage is not None and (shown[-1].usage.prompt_tokens, shown[-1].usage.completion_tokens) == \
        (11, 7)
    router.stop()
    rows = usage_rows(db, "request")
    assert [(r["stream"], r["prompt_tokens"], r["completion_tokens"], r["estimated"]) for r in rows] == \
        [(1, 11, 7, 0), (1, 11, 7, 0)]


def test_answers_without_usage_are_estimated_and_flagged(router: Any, upstream: Any, db: str) -> None:
    words = "Paris is the capital of France, and it has been for a very long time."
    upstream.always("up-priced", Text(content=words, usage=None))
    client = router.client()
    whole = client.chat.completions.create(model="paid", messages=MESSAGES)
    assert whole.usage is None
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                       client.chat.completions.create(model="paid", messages=MESSAGES, stream=True) if chunk.choices)
    assert streamed == words
    router.stop()
    rows = usage_rows(db, "request")
    assert len(rows) == 2
    for row in rows:
        assert row["estimated"] == 1
        assert 10 <= row["prompt_tokens"] <= 40, row
        assert 12 <= row["completion_tokens"] <= 25, row
        assert row["cost_nano"] == priced_nano(row["prompt_tokens"], row["completion_tokens"])
    assert rows[0]["completion_tokens"] == rows[1]["completion_tokens"]


def test_refused_requests_are_recorded_without_a_deployment(router: Any, upstream: Any, db: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        router.client(api_key="sk-wrong").chat.completions.create(model="paid", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        router.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    router.stop()
    assert upstream.served() == []
    rows = sorted(usage_rows(db), key=lambda row: row["http_status"])  # the 401 is counted, written at the end
    assert [(r["kind"], r["status"], r["http_status"], r["attempt"], r["deployment"]) for r in rows] == \
        [("request", "refused", 401, 0, None), ("request", "refused", 404, 0, None)]
    assert rows[0]["agent"] is None and rows[1]["agent"] == "test-agent"
    assert (rows[0]["requests"], rows[0]["source"]) == (1, "127.0.0.1") and rows[1]["source"] is None
    assert all(r["prompt_tokens"] == 0 and r["cost_nano"] == 0 for r in rows)


def test_records_reach_the_database_in_batches_while_serving(upstream: Any, start_router: Any, db: str) -> None:
    router = start_router(ledger_config(upstream.openai_base_url), database_url=db, ledger_flush_interval=0.05,
                          admin_key="adm")
    client = router.client()
    for _ in range(3):
        client.chat.completions.create(model="paid", messages=MESSAGES)
    deadline = time.monotonic() + 5
    while len(usage_rows(db, "request")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(usage_rows(db, "request")) == 3
    assert router.http(headers={"x-admin-key": "adm"}).get("/readyz").json()["checks"]["ledger"].startswith(
        "ok (0 requests waiting, last write ")


def test_sigterm_drains_every_pending_record(upstream: Any, db: str, tmp_path: Any) -> None:
    """N requests answered and a few still streaming when SIGTERM arrives: every one is in the ledger after."""
    config = write_config(ledger_config(upstream.openai_base_url), str(tmp_path))
    proc = RouterProcess(config, env={"AGENT_ROUTER_DATABASE_URL": db,
                                      "AGENT_ROUTER_LEDGER_FLUSH_INTERVAL": "600"}).start()
    answered, streaming = 24, 3
    upstream.always("up-unpriced", SlowStream(delay=0.1, content="one two three four five six"))
    try:
        client = openai.OpenAI(base_url=f"{proc.url}/v1", api_key=TEST_KEY, max_retries=0, timeout=30)
        tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: client.chat.completions.create(model="paid", messages=MESSAGES, tools=tools),
                          range(answered)))
        assert usage_rows(db) == []  # nothing written yet: the flush interval is 10 minutes
        with ThreadPoolExecutor(streaming) as pool:
            slow = [pool.submit(lambda: "".join(chunk.choices[0].delta.content or "" for chunk in
                                                client.chat.completions.create(model="unknown-price", stream=True,
                                                                               messages=MESSAGES)
                                                if chunk.choices)) for _ in range(streaming)]
            wait_for(lambda: len(upstream.served("up-unpriced")) == streaming)
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            assert [future.result() for future in slow] == ["one two three four five six"] * streaming
    finally:
        code = proc.stop()
    assert code in (0, -15), proc.output()  # uvicorn re-raises SIGTERM after a clean shutdown
    requests = usage_rows(db, "request")
    assert len(requests) == answered + streaming
    assert sum(row["prompt_tokens"] for row in requests) == 11 * (answered + streaming)
    assert query(db, "SELECT COUNT(*) AS n FROM audit_events")[0]["n"] == answered  # one 'allowed' per request


def test_a_database_outage_keeps_records_in_memory_then_writes_them(upstream: Any, start_router: Any) -> None:
    """PostgreSQL refuses connections for a while: requests are still served, records wait (bounded), and are
    written once it is back; /readyz says degraded meanwhile and keeps saying what was dropped."""
    import psycopg

    with postgres_database() as url:
        router = start_router(ledger_config(upstream.openai_base_url), database_url=url, ledger_flush_interval=0.05,
                              ledger_max_pending=4, admin_key="adm")
        client, http = router.client(), router.http(headers={"x-admin-key": "adm"})
        client.chat.completions.create(model="paid", messages=MESSAGES)
        wait_for(lambda: len(usage_rows(url, "request")) == 1)
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            for _ in range(6):
                client.chat.completions.create(model="paid", messages=MESSAGES)
            wait_for(lambda: http.get("/readyz").json()["checks"]["ledger"].startswith("degraded: DatabaseUnavailable"))
            ready = http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            assert "(4 requests waiting, last write " in ready.json()["checks"]["ledger"]
            assert ready.json()["checks"]["ledger"].endswith(", 2 dropped)")
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        wait_for(lambda: len(usage_rows(url, "request")) == 1 + 4, timeout=15)
        ledger = http.get("/readyz").json()["checks"]["ledger"]
        assert ledger.startswith("degraded: 2 requests' records were dropped (0 requests waiting")
        router.stop()
        assert len(usage_rows(url, "request")) == 5


def wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# -- cost: a pure function -------------------------------------------------------------------------------------
def spec(**prices: float) -> DeploymentSpec:
    return DeploymentSpec(provider="p", model="model-nobody-prices", prices=Prices(**prices) if prices else None)


def test_cost_charges_cached_prompt_tokens_at_the_cached_price() -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 400}}
    cost, known = cost_usd(spec(input_per_million=2, output_per_million=8, cached_input_per_million=0.5), usage)
    assert known and to_nano(cost) == 600 * 2000 + 400 * 500 + 100 * 8000
    cost, known = cost_usd(spec(input_per_million=2, output_per_million=8), usage)
    assert known and to_nano(cost) == 1000 * 2000 + 100 * 8000  # no cached price: the input price


def test_cost_is_unknown_not_zero_without_a_price() -> None:
    assert cost_usd(spec(), {"prompt_tokens": 5, "completion_tokens": 1}) == (None, False)
    assert cost_usd(spec(input_per_million=1), {"prompt_tokens": 5, "completion_tokens": 1}) == (None, False)
    assert cost_usd(spec(), {"prompt_tokens": 0, "completion_tokens": 0}) == (0.0, False)
    assert cost_usd(spec(input_per_million=1, output_per_million=1), None) == (0.0, True)


def test_a_client_that_leaves_mid_stream_is_recorded_and_the_upstream_let_go(router: Any, upstream: Any,
                                                                               db: str) -> None:
    """The client closes the connection after the first chunk: the router stops relaying at once (it does not
    read the rest of a slow upstream answer) and the ledger says the request ended with the client gone."""
    import httpx

    words = " ".join(f"w{i}" for i in range(60))
    upstream.always("up-unpriced", SlowStream(delay=0.1, content=words))
    body = {"model": "unknown-price", "stream": True, "messages": MESSAGES}
    began = time.monotonic()
    with httpx.Client(timeout=10) as http, http.stream("POST", f"{router.url}/v1/chat/completions", json=body,
                                                       headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
        assert resp.status_code == 200
        first = next(resp.iter_raw())
        assert first.startswith(b"data: ")
        request_id = resp.headers["x-request-id"]
    router.stop()  # drains the ledger
    assert time.monotonic() - began < 5  # the 60 slow chunks (6 s) were not all read
    (row,) = [r for r in usage_rows(db, "request") if r["request_id"] == request_id]
    assert row["status"] == "error" and "client disconnected" in row["error"]
