"""Request ids cannot be planted: records are keyed by the router's own id, the caller's is kept beside it.

Two agents that send the same ``x-request-id`` get it echoed back for their traces, but each request is stored
under an id the router minted (returned in ``x-agent-router-request-id``, named by error messages), so neither
can write records under the other's id; ``audit list --request-id`` finds either id and never merges agents.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

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

AGENTS = agents_yaml(("ops-bot", "ops"), ("shadow-bot", "shadow"), ("block-bot", "blocker"))
SHARED = "trace-shared.1:a"


@pytest.fixture
def router(upstream: Any, start_router: Any, db: str) -> Any:
    return start_router(ledger_config(upstream.openai_base_url, ROLES + AGENTS), database_url=db,
                        ledger_flush_interval=30)


def ask(router: Any, agent: str, request_id: str | None = SHARED) -> httpx.Headers:
    headers = {"x-request-id": request_id} if request_id else {}
    with router.client(api_key=agent_key(agent), default_headers=headers) as client:
        raw = client.chat.completions.with_raw_response.create(model="paid", messages=MESSAGES,
                                                               tools=[tool("search"), tool("read_secrets")])
    return raw.headers


def audit_list(db: str, *args: str) -> list[dict[str, Any]]:
    result = run_cli("audit", "list", "--format", "json", *args, url=db)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_two_agents_sending_one_request_id_keep_separate_records(router: Any, db: str) -> None:
    ops, shadow = ask(router, "ops-bot"), ask(router, "shadow-bot")
    blocker = router.client(api_key=agent_key("block-bot"), default_headers={"x-request-id": SHARED})
    with blocker, pytest.raises(openai.PermissionDeniedError) as blocked:
        blocker.chat.completions.create(model="paid", messages=MESSAGES, tools=[tool("drop_tables")])
    own = {"ops-bot": ops["x-agent-router-request-id"], "shadow-bot": shadow["x-agent-router-request-id"],
           "block-bot": blocked.value.response.headers["x-agent-router-request-id"]}
    assert ops["x-request-id"] == shadow["x-request-id"] == SHARED, "the caller's id is echoed for its traces"
    assert blocked.value.response.headers["x-request-id"] == SHARED
    assert len(set(own.values())) == 3 and SHARED not in own.values()
    router.stop()

    requests = usage_rows(db, "request")
    assert {row["request_id"]: row["agent"] for row in requests} == {value: key for key, value in own.items()}
    assert {row["client_request_id"] for row in usage_rows(db)} == {SHARED}

    listed = audit_list(db, "--request-id", SHARED)
    assert {row["agent"] for row in listed} == set(own)
    for row in listed:  # every row under its own request, with its own agent, and the caller's id shown
        assert row["request_id"] == own[row["agent"]] and row["client_request_id"] == SHARED
    for agent, request_id in own.items():
        mine = audit_list(db, "--request-id", request_id)
        assert mine and {row["agent"] for row in mine} == {agent}
    result = run_cli("audit", "verify", url=db)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_a_sane_id_of_its_own_the_caller_gets_the_routers(router: Any, db: str) -> None:
    plain = ask(router, "ops-bot", request_id=None)
    unsafe = ask(router, "ops-bot", request_id="has spaces, " + "x" * 200)
    for headers in (plain, unsafe):
        assert headers["x-request-id"] == headers["x-agent-router-request-id"]
    with httpx.Client(base_url=router.url) as http:
        health = http.get("/healthz", headers={"x-request-id": SHARED})
    assert health.headers["x-request-id"] == SHARED and health.headers["x-agent-router-request-id"] != SHARED
    router.stop()
    ids = {row["request_id"]: row["client_request_id"] for row in usage_rows(db, "request")}
    assert ids == {plain["x-request-id"]: None, unsafe["x-request-id"]: None}


def test_a_planted_id_cannot_reach_another_agents_records(router: Any, db: str) -> None:
    """An agent that sends another request's router id as its own x-request-id adds nothing under that id."""
    victim = ask(router, "ops-bot", request_id=None)["x-agent-router-request-id"]
    planted = ask(router, "shadow-bot", request_id=victim)
    assert planted["x-agent-router-request-id"] != victim
    router.stop()
    assert {row["agent"] for row in usage_rows(db) if row["request_id"] == victim} == {"ops-bot"}
    stored = query(db, "SELECT agent FROM audit_events WHERE request_id = ?", (victim,))
    assert stored and {row["agent"] for row in stored} == {"ops-bot"}
    listed = audit_list(db, "--request-id", victim)
    assert {(row["agent"], row["request_id"]) for row in listed} == {
        ("ops-bot", victim), ("shadow-bot", planted["x-agent-router-request-id"])}, "both shown, never merged"
