"""Hostile usage reports: garbage never raises, impossible numbers are replaced by the router's own estimate
(flagged ``estimated``), and nothing an upstream reports lowers a budget."""

from __future__ import annotations

import math
from typing import Any

import pytest

from router.ledger.cost import token_counts
from router.ledger.usage import MAX_TOKENS, plausible
from tests.fakes.behaviours import Scripted
from tests.harness import wait_until
from tests.ledger_helpers import MESSAGES, ledger_config, usage_rows
from tests.test_limits import limits_config

BASE = {"id": "chatcmpl-x", "created": 1, "model": "up-priced"}
WORDS = "Paris is the capital of France, and it has been for a very long time."


def answer(usage: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": WORDS}
    return {**BASE, "object": "chat.completion", "usage": usage,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]}


def events(usage_chunk: Any) -> list[Any]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**BASE, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return [chunk({"role": "assistant", "content": ""}), chunk({"content": WORDS}), chunk({}, "stop"), usage_chunk]


IMPOSSIBLE = [
    {"prompt_tokens": -5, "completion_tokens": 7},
    {"prompt_tokens": 11, "completion_tokens": MAX_TOKENS + 1},
    {"prompt_tokens": math.nan, "completion_tokens": 7},
    {"prompt_tokens": math.inf, "completion_tokens": -math.inf},
    {"prompt_tokens": "11", "completion_tokens": 7},
    {"prompt_tokens": True, "completion_tokens": 7},
    {"prompt_tokens": 11.5, "completion_tokens": 7},
    {"prompt_tokens": {"value": 11}, "completion_tokens": [7]},
    {"prompt_tokens": 11},
    {"prompt_tokens": 11, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": -3}},
    {"prompt_tokens": 11, "completion_tokens": 7, "prompt_tokens_details": "lots"},
    "11 tokens", [11, 7],
]


@pytest.mark.parametrize("usage", IMPOSSIBLE)
def test_impossible_usage_is_not_plausible_and_never_raises_nor_goes_negative(usage: Any) -> None:
    assert not plausible(usage)
    counts = token_counts(usage if isinstance(usage, dict) else None)
    assert all(0 <= count <= MAX_TOKENS for count in counts)


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 11, "completion_tokens": 7},
    {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    {"prompt_tokens": 11.0, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": None}},
    {"prompt_tokens": 11, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4}},
])
def test_possible_usage_is_kept(usage: dict[str, Any]) -> None:
    assert plausible(usage)


@pytest.fixture
def ledger_router(upstream: Any, start_router: Any, tmp_path: Any) -> tuple[Any, str]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    return start_router(ledger_config(upstream.openai_base_url), database_url=url), url


def test_a_stream_whose_usage_chunk_is_not_json_ends_normally_and_is_estimated(ledger_router: Any,
                                                                              upstream: Any) -> None:
    router, url = ledger_router
    broken = b'{"id":"chatcmpl-x","choices":[],"usage":{"prompt_tokens":NaN,"completion_tokens":7'
    upstream.queue("up-priced", Scripted(events=events(broken)))
    body = {"model": "paid", "messages": MESSAGES, "stream": True}
    with router.http() as http, http.stream("POST", "/v1/chat/completions", json=body,
                                            headers={"authorization": "Bearer test-key"}) as response:
        text = "".join(response.iter_text())
    assert response.status_code == 200 and "error" not in text and text.endswith("data: [DONE]\n\n")
    assert WORDS in text
    router.stop()
    (row,) = usage_rows(url, "request")
    assert (row["status"], row["estimated"]) == ("ok", 1)
    assert 10 <= row["completion_tokens"] <= 25


@pytest.mark.parametrize("usage", [{"prompt_tokens": -5, "completion_tokens": 10**12},
                                   {"prompt_tokens": "11", "completion_tokens": 7}])
def test_an_answer_with_impossible_usage_is_estimated_instead(ledger_router: Any, upstream: Any,
                                                              usage: dict[str, Any]) -> None:
    router, url = ledger_router
    upstream.queue("up-priced", Scripted(answer=answer(usage)))
    upstream.queue("up-priced", Scripted(events=events({**BASE, "object": "chat.completion.chunk", "choices": [],
                                                        "usage": usage})))
    client = router.client()
    assert client.chat.completions.create(model="paid", messages=MESSAGES).choices[0].message.content == WORDS
    assert "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="paid", messages=MESSAGES, stream=True) if c.choices) == WORDS
    router.stop()
    rows = usage_rows(url, "request")
    assert [row["estimated"] for row in rows] == [1, 1]
    for row in rows:
        assert 10 <= row["prompt_tokens"] <= 40 and 10 <= row["completion_tokens"] <= 25
        assert row["cost_nano"] > 0


def test_a_negative_cost_never_lowers_a_budget(upstream: Any, start_router: Any) -> None:
    router = start_router(limits_config(upstream.openai_base_url, role="{usd_per_day: 100}"),
                          admin_key="admin-secret")
    upstream.queue("up-primary", Scripted(answer={**answer({"prompt_tokens": -1_000_000, "completion_tokens": 7}),
                                                  "model": "up-primary"}))
    client = router.client()
    for _ in range(3):  # the hostile answer, then two ordinary ones ($0.025 each)
        client.chat.completions.create(model="fast", messages=MESSAGES)

    def spent() -> float:
        with router.http() as http:
            view = http.get("/admin/limits", headers={"authorization": "Bearer admin-secret"}).json()
        scopes = {(row["kind"], row["name"]): row["limits"] for row in view["scopes"]}
        return float(scopes[("role", "tester")]["usd_per_day"]["used"])

    assert wait_until(lambda: abs(spent() - 0.05) < 1e-9), spent()
