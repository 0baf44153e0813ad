"""Stored responses: kept on the hot path, found at once and after a restart, only by their own agent, on a
real SQLite file and a real PostgreSQL; hostile values; retention; ``previous_response_id`` expanded into a
stateless input; and ``GET``/``DELETE /v1/responses/{id}`` and ``input_items`` through the official SDK."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from router.context import RequestContext
from router.errors import PreviousResponseNotFound
from router.response_store import ReasoningOrigins, ResponseStore, expand_previous
from router.response_store.rows import ResponseRow
from router.response_store.writes import fetch_row, write_rows
from router.settings import Settings
from router.store.database import Database
from tests.backing_services import fresh_database
from tests.configs import TEST_KEY_HASH, openai_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer
from tests.spec import assert_matches

OTHER_KEY = "other-key"
TWO_AGENTS = f"""
roles:
  tester: {{models: ["*"], tools: {{allow: ["*"]}}}}
agents:
  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}]}}
  other-agent: {{role: tester, keys: [{{hash: "sha256:{hashlib.sha256(OTHER_KEY.encode()).hexdigest()}"}}]}}
"""


def response_object(response_id: str, text: str = "It is sunny.", **extra: Any) -> dict[str, Any]:
    """A Response as the API sends it: a reasoning item, a function call, a message."""
    return {
        "id": response_id, "object": "response", "created_at": 1764770000, "status": "completed",
        "model": "gpt-5-mini", "error": None, "incomplete_details": None, "instructions": "Be brief.",
        "metadata": {}, "parallel_tool_calls": True, "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto",
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}],
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-secret-" + response_id},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city":"Paris"}', "status": "completed"},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]},
        ],
        "usage": {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19,
                  "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 3}},
        **extra,
    }


INPUT = [{"role": "developer", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris?"}]


def test_the_sample_is_a_response_of_the_spec() -> None:
    assert_matches("Response", response_object("resp_sample"))


# -- a started store on a real database --------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    with fresh_database("ar_responses") as url:
        yield url


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": url, "ledger_flush_interval": 0.05, "ledger_drain_timeout": 5.0}
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def started_store(url: str, **overrides: Any) -> AsyncIterator[ResponseStore]:
    database = Database(url)
    store = ResponseStore(database, settings_for(url, **overrides))
    await store.start()
    try:
        yield store
    finally:
        await store.close()
        await asyncio.to_thread(database.close)


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def test_kept_found_at_once_and_after_a_restart_by_its_agent_only(database_url: str) -> None:
    async def scenario() -> None:
        async with started_store(database_url, ledger_flush_interval=60) as store:
            store.keep("alice", response_object("resp_a"), INPUT, "primary", "fake")
            found = await store.get("resp_a", "alice")  # before any batch: from memory
            assert found is not None and found.response == response_object("resp_a")
            assert found.input_items == INPUT and (found.deployment, found.provider) == ("primary", "fake")
            assert await store.get("resp_a", "bob") is None
            assert await store.get("resp_a", None) is None
            assert await store.get("resp_nope", "alice") is None
        # close wrote it (the flush timer never fired); a new process reads it from the database
        async with started_store(database_url) as again:
            assert again.recent.get("resp_a") is None
            found = await again.get("resp_a", "alice")
            assert found is not None and found.response == response_object("resp_a")
            assert found.input_items == INPUT and found.deployment == "primary"
            assert await again.get("resp_a", "bob") is None

    run(scenario)


def test_close_writes_everything_queued(database_url: str) -> None:
    async def scenario() -> None:
        async with started_store(database_url, ledger_flush_interval=60, responses_memory_items=0) as store:
            for n in range(150):
                store.keep("alice", response_object(f"resp_{n}", text=f"answer {n}"), INPUT, "primary", "fake")
        async with started_store(database_url, responses_memory_items=0) as again:
            for n in range(150):
                found = await again.get(f"resp_{n}", "alice")
                assert found is not None and found.response["output"][2]["content"][0]["text"] == f"answer {n}"

    run(scenario)


HOSTILE = "nul\x00 lone\ud800 surrogate \\u0000 [escaped] " + "x" * 100_000


def test_hostile_values_round_trip_exactly(database_url: str) -> None:
    hostile = response_object("resp_hostile", text=HOSTILE, metadata={"big": 2**80, "nul\x00key": "v\x00"})
    items = [{"role": "user", "content": HOSTILE}, {"type": "mystery_item", "payload": [None, 1e308, "\x00"]}]

    async def scenario() -> None:
        async with started_store(database_url, responses_memory_items=0) as store:
            store.keep("agent\x00with nul", hostile, items, "dep\x00", "prov")
            store.keep("alice", response_object("resp_plain"), INPUT, "primary", "fake")
            await store.flush()
            assert store.unwritable == 0 and store.problem is None
            found = await store.get("resp_hostile", "agent\x00with nul")
            assert found is not None and found.response == hostile and found.input_items == items
            assert await store.get("resp_plain", "alice") is not None

    run(scenario)


def test_a_row_the_database_refuses_costs_no_other_row(database_url: str) -> None:
    """A row that bypassed encoding (a raw lone surrogate: neither database takes it) is handed back alone."""
    def row(response_id: str, body: str) -> ResponseRow:
        return ResponseRow(response_id, "alice", body, "[]", "primary", "fake", time.time(), time.time() + 3600)

    async def scenario() -> None:
        async with started_store(database_url) as store:
            rows = [row(f"resp_{n}", '{"id":"ok"}') for n in range(7)]
            rows.insert(3, row("resp_bad", '{"text":"\ud800"}'))
            refused = await store.database.run(write_rows, store.database, rows)
            assert [r.id for r in refused] == ["resp_bad"]
            for n in range(7):
                assert await store.database.run(fetch_row, store.database, f"resp_{n}") is not None
            assert await store.database.run(fetch_row, store.database, "resp_bad") is None

    run(scenario)


def test_too_large_and_bad_ids_are_not_stored(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with started_store(database_url, responses_max_bytes=4096) as store:
            caplog.set_level("INFO", logger="agent_router.responses")
            for n in range(3):
                store.keep("alice", response_object(f"resp_big{n}", text="y" * 5000), INPUT, "primary", "fake")
            store.keep("alice", response_object("resp_\x00bad"), INPUT, "primary", "fake")
            store.keep("alice", response_object("x" * 300), INPUT, "primary", "fake")
            await store.flush()
            assert await store.get("resp_big0", "alice") is None
            assert await store.get("resp_\x00bad", "alice") is None
            assert sum(store.not_stored.values()) == 5 and len(store.not_stored) == 2
            logged = [r for r in caplog.records if "is not stored" in r.getMessage()]
            assert len(logged) == 2  # once per reason

    run(scenario)


def test_delete_by_its_agent_only_and_for_good(database_url: str) -> None:
    async def scenario() -> None:
        async with started_store(database_url, ledger_flush_interval=60) as store:
            store.keep("alice", response_object("resp_written"), INPUT, "primary", "fake")
            await store.flush()
            store.keep("alice", response_object("resp_queued"), INPUT, "primary", "fake")  # not written yet
            assert not await store.delete("resp_written", "bob")
            assert await store.get("resp_written", "alice") is not None
            assert await store.delete("resp_written", "alice")
            assert await store.delete("resp_queued", "alice")
            assert not await store.delete("resp_queued", "alice")
            assert await store.get("resp_written", "alice") is None
            assert await store.get("resp_queued", "alice") is None
        async with started_store(database_url) as again:
            assert await again.get("resp_written", "alice") is None
            assert await again.get("resp_queued", "alice") is None

    run(scenario)


def test_expired_responses_are_never_returned_and_are_purged(database_url: str) -> None:
    async def scenario() -> None:
        async with started_store(database_url, responses_retention_hours=0.3 / 3600) as store:
            store.keep("alice", response_object("resp_old"), INPUT, "primary", "fake")
            await store.flush()
            assert await store.get("resp_old", "alice") is not None
            await asyncio.sleep(0.4)
            assert await store.get("resp_old", "alice") is None  # in memory still, but expired
            store.recent.discard("resp_old")
            assert await store.get("resp_old", "alice") is None  # in the database still, but expired
            assert await store.purge_expired() == 1
            assert await store.database.run(fetch_row, store.database, "resp_old") is None

    run(scenario)


def test_switched_off_keeps_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"

    async def scenario() -> None:
        async with started_store(url, responses_store=False) as store:
            store.keep("alice", response_object("resp_a"), INPUT, "primary", "fake")
            assert await store.get("resp_a", "alice") is None and store.pending == 0
            tables = await store.database.run(store.database.fetchall,
                                              "SELECT name FROM sqlite_master WHERE name = 'stored_responses'")
            assert tables == []

    run(scenario)


# -- previous_response_id ------------------------------------------------------------------------------

def responses_ctx(payload: dict[str, Any], agent: str | None) -> RequestContext:
    from router.config import load_snapshot

    ctx = RequestContext(request_id="req-1", snapshot=load_snapshot(None), payload=payload, stream=False,
                         requested_model=str(payload.get("model", "")), wire="responses")
    ctx.agent = agent
    return ctx


def test_previous_response_becomes_the_whole_input(database_url: str) -> None:
    first = response_object("resp_1", extra_unknown_field={"kept": True})
    first["output"].append({"type": "web_search_call", "id": "ws_1", "status": "completed",
                            "action": {"type": "search", "query": "paris"}})

    async def scenario() -> None:
        async with started_store(database_url) as store:
            store.keep("alice", first, INPUT, "reasoner", "openai")
            payload = {"model": "fast", "previous_response_id": "resp_1", "instructions": "New rules.",
                       "input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]}
            ctx = responses_ctx(payload, "alice")
            assert await expand_previous(store, ctx) == "reasoner"
            assert "previous_response_id" not in ctx.payload and ctx.payload["instructions"] == "New rules."
            assert ctx.payload["input"] == [*INPUT, *first["output"],
                                            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]
            assert store.origins.origin_of(ctx.payload["input"]) == "reasoner"

            text = responses_ctx({"model": "fast", "previous_response_id": "resp_1", "input": "thanks"}, "alice")
            await expand_previous(store, text)
            assert text.payload["input"][-1] == {"role": "user", "content": "thanks"}
            assert "instructions" not in text.payload  # never inherited

            plain = responses_ctx({"model": "fast", "input": "hi"}, "alice")
            assert await expand_previous(store, plain) is None and plain.payload == {"model": "fast", "input": "hi"}
        async with started_store(database_url) as restarted:  # the chain and its origin survive a restart
            again = responses_ctx({"model": "fast", "previous_response_id": "resp_1", "input": "more"}, "alice")
            assert await expand_previous(restarted, again) == "reasoner"
            assert restarted.origins.origin_of(again.payload["input"]) == "reasoner"

    run(scenario)


def test_unknown_or_foreign_previous_response_is_the_openai_error(database_url: str) -> None:
    async def scenario() -> None:
        async with started_store(database_url) as store:
            store.keep("alice", response_object("resp_mine"), INPUT, "primary", "fake")
            for response_id, agent in (("resp_nope", "alice"), ("resp_mine", "bob"), ("resp_mine", None)):
                payload = {"model": "fast", "previous_response_id": response_id, "input": "hi"}
                with pytest.raises(PreviousResponseNotFound) as caught:
                    await expand_previous(store, responses_ctx(payload, agent))
                assert caught.value.status == 400
                assert caught.value.to_body() == {"error": {
                    "message": f"Previous response with id '{response_id}' not found.",
                    "type": "invalid_request_error", "param": "previous_response_id",
                    "code": "previous_response_not_found"}}
                assert payload["previous_response_id"] == response_id  # untouched when refused

    run(scenario)


def test_reasoning_origins_are_bounded_and_know_only_what_they_saw() -> None:
    origins = ReasoningOrigins(max_items=2)
    origins.remember(response_object("r1")["output"], "dep-a")
    origins.remember(response_object("r2")["output"], "dep-b")
    assert origins.origin_of(response_object("r1")["output"]) == "dep-a"
    assert origins.origin_of([*response_object("r1")["output"], *response_object("r2")["output"]]) == "dep-b"
    assert origins.origin_of([{"type": "reasoning", "encrypted_content": "never seen"}]) is None
    assert origins.origin_of([{"role": "user", "content": "hi"}, "junk", None]) is None
    origins.remember(response_object("r3")["output"], "dep-c")
    assert len(origins) == 2 and origins.origin_of(response_object("r1")["output"]) is None
    tampered = copy.deepcopy(response_object("r3")["output"])
    tampered[0]["encrypted_content"] += "x"
    assert origins.origin_of(tampered) is None


# -- over HTTP, with the official SDK -----------------------------------------------------------------

@pytest.fixture
def router(upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(openai_config(upstream.openai_base_url, TWO_AGENTS))


def keep_on_router(router: RouterServer, agent: str, response: dict[str, Any], items: list[Any]) -> None:
    """Call ``keep`` on the running router's store, on its own event loop (as the hot path does)."""
    store: ResponseStore = router.state.responses
    assert store._task is not None
    loop = store._task.get_loop()
    done = asyncio.run_coroutine_threadsafe(_keep(store, agent, response, items), loop)
    done.result(5)


async def _keep(store: ResponseStore, agent: str, response: dict[str, Any], items: list[Any]) -> None:
    store.keep(agent, response, items, "primary", "fake")


def test_retrieve_and_delete_through_the_sdk(router: RouterServer) -> None:
    sent = response_object("resp_http")
    keep_on_router(router, "test-agent", sent, INPUT)
    client = router.client()
    retrieved = client.responses.retrieve("resp_http")
    assert retrieved.id == "resp_http" and retrieved.output_text == "It is sunny."
    with router.http() as http:
        raw = http.get("/v1/responses/resp_http", headers={"authorization": "Bearer test-key"})
    assert raw.status_code == 200 and raw.json() == sent  # as it was sent to the client

    other = router.client(api_key=OTHER_KEY)
    with pytest.raises(openai.NotFoundError) as foreign:
        other.responses.retrieve("resp_http")
    with pytest.raises(openai.NotFoundError) as unknown:
        client.responses.retrieve("resp_unknown")
    for caught in (foreign, unknown):
        assert caught.value.status_code == 404
        error = caught.value.body
        assert isinstance(error, dict) and error["type"] == "invalid_request_error", error
    with pytest.raises(openai.NotFoundError):
        other.responses.delete("resp_http")
    with pytest.raises(openai.AuthenticationError):
        router.client(api_key="not-a-key").responses.retrieve("resp_http")

    with router.http() as http:
        deleted = http.delete("/v1/responses/resp_http", headers={"authorization": "Bearer test-key"})
    assert deleted.status_code == 200
    assert deleted.json() == {"id": "resp_http", "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_http")
    with pytest.raises(openai.NotFoundError):
        client.responses.delete("resp_http")


def test_sdk_delete_returns_quietly(router: RouterServer) -> None:
    keep_on_router(router, "test-agent", response_object("resp_del"), INPUT)
    router.client().responses.delete("resp_del")
    with pytest.raises(openai.NotFoundError):
        router.client().responses.retrieve("resp_del")


def test_input_items_pages_through_the_sdk(router: RouterServer) -> None:
    items: list[Any] = [
        {"role": "user", "content": "first"},
        {"type": "message", "id": "msg_in", "role": "assistant",
         "content": [{"type": "output_text", "text": "second", "annotations": []}]},
        {"type": "function_call", "id": "fc_9", "call_id": "call_9", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_9", "output": "sunny"},
        {"role": "assistant", "content": "fifth"},
    ]
    keep_on_router(router, "test-agent", response_object("resp_items"), items)
    client = router.client()

    ascending = list(client.responses.input_items.list("resp_items", limit=2, order="asc"))
    assert [item.type for item in ascending] == ["message", "message", "function_call", "function_call_output",
                                                "message"]
    assert ascending[1].id == "msg_in" and ascending[2].id == "fc_9"
    assert len({item.id for item in ascending}) == 5
    first = ascending[0]
    assert first.type == "message" and first.content[0].type == "input_text"
    assert first.content[0].text == "first"

    page = client.responses.input_items.list("resp_items", limit=3)  # newest first by default
    assert [item.id for item in page.data] == [ascending[4].id, ascending[3].id, "fc_9"]
    assert page.has_more is True
    rest = client.responses.input_items.list("resp_items", limit=3, after="fc_9")
    assert [item.id for item in rest.data] == ["msg_in", ascending[0].id] and rest.has_more is False

    with router.http(headers={"authorization": "Bearer test-key"}) as http:
        raw = http.get("/v1/responses/resp_items/input_items", params={"limit": 2, "order": "asc"}).json()
        assert raw["object"] == "list" and raw["first_id"] == ascending[0].id and raw["last_id"] == "msg_in"
        assert http.get("/v1/responses/resp_items/input_items", params={"limit": 101}).status_code == 400
        assert http.get("/v1/responses/resp_items/input_items", params={"after": "nope"}).status_code == 400
    with pytest.raises(openai.NotFoundError):
        router.client(api_key=OTHER_KEY).responses.input_items.list("resp_items")


def test_an_unreachable_database_keeps_rows_queued_and_says_so() -> None:
    from router.errors import ResponseStoreUnavailable
    from tests.harness import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"

    async def scenario() -> None:
        database = Database(url, connect_timeout=0.5)
        store = ResponseStore(database, settings_for(url, ledger_drain_timeout=0.5))
        await store.start()
        try:
            store.keep("alice", response_object("resp_waiting"), INPUT, "primary", "fake")
            assert await store.get("resp_waiting", "alice") is not None  # from memory
            assert not await store.flush() and store.pending == 1
            assert store.health()["responses"].startswith("degraded: DatabaseUnavailable")
            with pytest.raises(ResponseStoreUnavailable) as caught:
                await store.get("resp_elsewhere", "alice")
            assert caught.value.status == 503
        finally:
            await store.close()
            await asyncio.to_thread(database.close)

    run(scenario)


def test_a_fleet_replica_finds_a_response_another_one_served_a_moment_ago() -> None:
    with fresh_database("ar_responses") as url:
        async def scenario() -> None:
            async with started_store(url, ledger_flush_interval=0.2) as served, \
                    started_store(url, ledger_flush_interval=0.2) as follows:
                served.keep("alice", response_object("resp_fleet"), INPUT, "primary", "fake")
                ctx = responses_ctx({"model": "fast", "previous_response_id": "resp_fleet", "input": "go on"},
                                    "alice")
                assert await expand_previous(follows, ctx) == "primary"
                assert ctx.payload["input"][:len(INPUT)] == INPUT

        run(scenario)


def test_kept_again_replaces_for_its_owner_only(database_url: str) -> None:
    async def scenario() -> None:
        async with started_store(database_url) as store:
            store.keep("alice", response_object("resp_bg", status="in_progress"), INPUT, "primary", "fake")
            await store.flush()
            store.keep("alice", response_object("resp_bg"), INPUT, "secondary", "fake")
            await store.flush()
            rows = [row(n) for n in range(2)]
            await store.database.run(write_rows, store.database, rows)  # another owner, same id: refused quietly
        async with started_store(database_url) as again:
            found = await again.get("resp_bg", "alice")
            assert found is not None and found.response["status"] == "completed"
            assert found.deployment == "secondary"
            assert await again.get("resp_bg", "mallory") is None

    def row(n: int) -> ResponseRow:
        return ResponseRow("resp_bg", "mallory", '{"id":"resp_bg"}', "[]", "evil", "evil", time.time(),
                           time.time() + 3600)

    run(scenario)
