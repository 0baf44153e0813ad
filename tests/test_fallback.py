"""Fallback, retries, timeouts and capability checks, end to end: fake upstreams that fail in every way,
the real router, the official openai SDK. Each test says what the client receives and which deployments
were tried (the x-agent-router-* headers and what each fake upstream model was actually sent)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import openai
import pytest

from router.capabilities import request_needs, screen
from router.config.schema import Capabilities, DeploymentSpec
from router.errors import (
    ContentRefused,
    ContextWindowExceeded,
    UpstreamConnectionError,
    UpstreamConnectionLost,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from router.fallback_policy import Failure, Skip, Step, backoff_delay, final_error, next_step
from tests.configs import with_test_identity
from tests.fakes.behaviours import (
    CONTEXT_EXCEEDED_ANTHROPIC,
    CONTEXT_EXCEEDED_OPENAI,
    Error,
    Garbage,
    Hang,
    InvalidJSON,
    ResetMidStream,
    SlowStream,
    Text,
    openai_error,
)
from tests.fakes.raw_upstream import RawUpstream
from tests.harness import free_port, wait_until
from tests.ledger_helpers import usage_rows

USER = [{"role": "user", "content": "hello"}]


def config(base_url: str, *, chain: str = "[a, b]", timeout: float = 5, deadline: float = 30, retries: int = 1,
           extra_deployments: str = "", models: str = "") -> str:
    """Three deployments on the fake upstream (a, b: 8k window; big: 128k) and one on a closed port."""
    return with_test_identity(f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: {timeout}}}
  dead: {{type: openai, base_url: "http://127.0.0.1:{free_port()}/v1", api_key: sk-up, timeout: {timeout},
          connect_timeout: 1}}
deployments:
  a: {{provider: fake, model: up-a, context_window: 8192}}
  b: {{provider: fake, model: up-b, context_window: 8192}}
  big: {{provider: fake, model: up-big, context_window: 128000}}
  gone: {{provider: dead, model: up-gone, context_window: 8192}}
{extra_deployments}
models:
  chat: {chain}
{models}
routing:
  deadline_seconds: {deadline}
  retries: {retries}
  backoff_base: 0.01
  backoff_max: 0.05
  cooldown: {{failures: 100, window_seconds: 30, cooldown_seconds: 30}}
""")


def ask(router, model: str = "chat", **kwargs):
    with router.client() as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=kwargs.pop("messages", USER),
                                                               **kwargs)
        return raw.parse(), raw.headers


def tried(upstream, *models: str) -> list[int]:
    return [len(upstream.served(m)) for m in models]


# -- end to end: non-streaming ----------------------------------------------------------------------------

def test_a_passing_5xx_is_retried_on_the_same_deployment(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.queue("up-a", Error(503))
    completion, headers = ask(router)
    assert completion.choices[0].message.content
    assert headers["x-agent-router-deployment"] == "a" and headers["x-agent-router-attempts"] == "2"
    assert tried(upstream, "up-a", "up-b") == [2, 0]


def test_a_lasting_500_retries_then_falls_back(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.always("up-a", Error(500))
    _, headers = ask(router)
    assert headers["x-agent-router-deployment"] == "b" and headers["x-agent-router-attempts"] == "3"
    assert tried(upstream, "up-a", "up-b") == [2, 1]


def test_retries_are_bounded_by_the_config(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, retries=0))
    upstream.always("up-a", Error(502))
    _, headers = ask(router)
    assert headers["x-agent-router-attempts"] == "2"
    assert tried(upstream, "up-a", "up-b") == [1, 1]


def test_rate_limit_with_long_retry_after_moves_on_at_once(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.queue("up-a", Error(429, openai_error("slow down", type_="rate_limit_error"), {"retry-after": "20"}))
    started = time.monotonic()
    _, headers = ask(router)
    assert time.monotonic() - started < 2
    assert headers["x-agent-router-deployment"] == "b"
    assert tried(upstream, "up-a", "up-b") == [1, 1]


def test_last_deployment_waits_out_a_short_retry_after(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[a]"))
    upstream.queue("up-a", Error(429, openai_error("slow down"), {"retry-after-ms": "300"}))
    started = time.monotonic()
    _, headers = ask(router)
    assert time.monotonic() - started >= 0.3
    assert headers["x-agent-router-deployment"] == "a" and headers["x-agent-router-attempts"] == "2"


def test_everything_rate_limited_gives_429_with_retry_after(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.always("up-a", Error(429, openai_error("slow down"), {"retry-after": "20"}))
    upstream.always("up-b", Error(429, openai_error("slow down"), {"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as caught:
        ask(router)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    message = caught.value.body["message"]
    assert "a:" in message and "b:" in message
    assert tried(upstream, "up-a", "up-b") == [1, 1]


def test_a_hang_past_the_timeout_falls_back(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, timeout=0.5))
    upstream.queue("up-a", Hang(10))
    started = time.monotonic()
    _, headers = ask(router)
    assert time.monotonic() - started < 3
    assert headers["x-agent-router-deployment"] == "b"
    assert tried(upstream, "up-a", "up-b") == [1, 1], "a timeout is not retried on the same deployment"


def test_every_deployment_hanging_gives_504_within_the_deadline(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[a, b, big]", timeout=1.5, deadline=2))
    upstream.always("*", Hang(10))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(router)
    elapsed = time.monotonic() - started
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "deadline_exceeded"
    assert 1.9 < elapsed < 4
    assert tried(upstream, "up-a", "up-b", "up-big") == [1, 1, 0]


def test_all_timeouts_within_the_deadline_give_504(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, timeout=0.3, deadline=10))
    upstream.always("*", Hang(10))
    with pytest.raises(openai.APIStatusError) as caught:
        ask(router)
    assert caught.value.status_code == 504 and caught.value.body["code"] == "upstream_timeout"


def test_connection_refused_is_retried_then_falls_back(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[gone, a]"))
    _, headers = ask(router)
    assert headers["x-agent-router-deployment"] == "a" and headers["x-agent-router-attempts"] == "3"


def test_invalid_json_falls_back_without_retry(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.queue("up-a", InvalidJSON())
    _, headers = ask(router)
    assert headers["x-agent-router-deployment"] == "b" and headers["x-agent-router-attempts"] == "2"


def failed_attempts(router) -> list[tuple[str, str]]:
    """(deployment, status) of every attempt row the ledger wrote, once the router has stopped."""
    router.stop()  # a graceful stop drains the ledger's queue
    return [(row["deployment"], row["status"]) for row in usage_rows(router.settings.database_url, "attempt")]


def test_a_connection_dropped_after_the_upstream_read_the_request_is_never_sent_there_again(upstream,
                                                                                           start_router):
    async def read_and_hang_up(writer, request: bytes, number: int) -> bool:
        return False

    raw = RawUpstream(read_and_hang_up).start()
    try:
        extra = "  raw: {provider: rawp, model: up-raw}\n"
        text = config(upstream.openai_base_url, chain="[raw, a]", retries=2, extra_deployments=extra)
        text = text.replace("deployments:\n", f"  rawp: {{type: openai, base_url: {raw.base_url}, api_key: sk-up}}\n"
                                              "deployments:\n", 1)
        router = start_router(text)
        _, headers = ask(router)
        assert headers["x-agent-router-deployment"] == "a" and headers["x-agent-router-attempts"] == "2"
        assert len(raw.requests) == 1, "the upstream may have run it: no second send, retries or not"
    finally:
        raw.stop()


@pytest.mark.parametrize("garbage", [
    Garbage(),
    Garbage(b'data: {"choices": [oops\n\ndata: [DONE]\n\n', "text/event-stream"),
    Garbage(b"data: null\n\ndata: [DONE]\n\n", "text/event-stream"),
    Garbage(b'{"id": "x", "choices": []}', "application/json"),
], ids=["html", "first-event-not-json", "first-event-not-an-object", "json-in-place-of-a-stream"])
def test_a_stream_whose_start_is_garbage_falls_back_like_a_500(upstream, start_router, garbage):
    router = start_router(config(upstream.openai_base_url, retries=0))
    upstream.queue("up-a", garbage)
    upstream.queue("up-b", Text("from b", chunk_size=2))
    stream = router.client().chat.completions.create(model="chat", messages=USER, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "from b"
    assert tried(upstream, "up-a", "up-b") == [1, 1]
    assert failed_attempts(router) == [("a", "error"), ("b", "ok")]


@pytest.mark.parametrize("garbage", [Garbage(), InvalidJSON(), Garbage(b"[1, 2]", "application/json")],
                         ids=["html", "invalid-json", "not-an-object"])
def test_a_whole_answer_that_is_not_a_json_object_falls_back(upstream, start_router, garbage):
    router = start_router(config(upstream.openai_base_url))
    upstream.queue("up-a", garbage)
    completion, headers = ask(router)
    assert completion.choices[0].message.content and headers["x-agent-router-deployment"] == "b"
    assert failed_attempts(router) == [("a", "error"), ("b", "ok")]


def test_the_callers_own_mistake_returns_at_once(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.queue("up-a", Error(400, openai_error("temperature must be at most 2", code="invalid_value")))
    with pytest.raises(openai.BadRequestError) as caught:
        ask(router)
    assert "temperature must be at most 2" in caught.value.body["message"]
    assert tried(upstream, "up-a", "up-b") == [1, 0]


@pytest.mark.parametrize("body", [CONTEXT_EXCEEDED_OPENAI, CONTEXT_EXCEEDED_ANTHROPIC], ids=["openai", "anthropic"])
def test_context_window_exceeded_moves_on_only_to_a_larger_window(upstream, start_router, body):
    router = start_router(config(upstream.openai_base_url, chain="[a, b, big]"))
    upstream.queue("up-a", Error(400, body))
    _, headers = ask(router)
    assert headers["x-agent-router-deployment"] == "big" and headers["x-agent-router-attempts"] == "2"
    assert tried(upstream, "up-a", "up-b", "up-big") == [1, 0, 1], "b's window is no larger than a's"


def test_prompt_too_long_everywhere_gives_400_context_length_exceeded(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[a, b, big]"))
    upstream.always("up-a", Error(400, CONTEXT_EXCEEDED_OPENAI))
    upstream.always("up-big", Error(400, CONTEXT_EXCEEDED_ANTHROPIC))
    with pytest.raises(openai.BadRequestError) as caught:
        ask(router)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert "b skipped" in caught.value.body["message"]


def test_a_prompt_larger_than_a_window_skips_that_deployment_unasked(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[a, big]"))
    long_prompt = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 3000}]
    _, headers = ask(router, messages=long_prompt)
    assert headers["x-agent-router-deployment"] == "big" and headers["x-agent-router-attempts"] == "1"
    assert tried(upstream, "up-a", "up-big") == [0, 1]


def test_a_content_refusal_moves_on(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.queue("up-a", Error(400, openai_error("flagged by the safety system", code="content_filter")))
    _, headers = ask(router)
    assert headers["x-agent-router-deployment"] == "b"


def test_a_mix_of_failures_gives_502_listing_what_was_tried(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[a, gone, b]", retries=0))
    upstream.always("up-a", Error(500))
    upstream.always("up-b", Error(429, openai_error("slow down"), {"retry-after": "30"}))
    with pytest.raises(openai.APIStatusError) as caught:
        ask(router)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "all_deployments_failed"
    message = caught.value.body["message"]
    assert all(f"{name}:" in message for name in ("a", "gone", "b"))


EXTRA = """
  plain: {provider: fake, model: up-plain, context_window: 8192,
          supports: {json_mode: false, vision: false, tools: false}}
"""


def test_a_deployment_without_json_mode_is_skipped(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[plain, a]", extra_deployments=EXTRA))
    _, headers = ask(router, response_format={"type": "json_object"})
    assert headers["x-agent-router-deployment"] == "a" and headers["x-agent-router-attempts"] == "1"
    assert tried(upstream, "up-plain", "up-a") == [0, 1]
    ask(router)  # without JSON mode the first deployment serves again
    assert tried(upstream, "up-plain") == [1]


def test_a_deployment_without_tools_is_skipped_when_tools_are_offered(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[plain, a]", extra_deployments=EXTRA))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    _, headers = ask(router, tools=tools)
    assert headers["x-agent-router-deployment"] == "a" and headers["x-agent-router-attempts"] == "1"
    assert tried(upstream, "up-plain", "up-a") == [0, 1]
    assert upstream.served("up-a")[0].tool_names == ["lookup"]


def test_no_capable_deployment_gives_400_saying_why(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, chain="[plain]", extra_deployments=EXTRA))
    image = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(router, messages=image)
    assert caught.value.body["code"] == "unsupported_capability"
    assert "plain skipped: does not support image inputs" in caught.value.body["message"]
    assert upstream.served() == []


# -- end to end: streaming ----------------------------------------------------------------------------------

def stream_events(router, model: str = "chat") -> tuple[int, dict[str, str], list[str]]:
    with router.http() as http, http.stream("POST", "/v1/chat/completions",
                                            headers={"authorization": "Bearer test-key"},
                                            json={"model": model, "messages": USER, "stream": True}) as resp:
        lines = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
        return resp.status_code, dict(resp.headers), lines


def test_stream_falls_back_before_the_first_byte(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, retries=0))
    upstream.queue("up-a", Error(503))
    upstream.queue("up-b", Text("from b", chunk_size=2))
    stream = router.client().chat.completions.create(model="chat", messages=USER, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "from b"
    assert tried(upstream, "up-a", "up-b") == [1, 1]


def test_stream_reset_midway_ends_with_an_error_event_and_done(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    upstream.queue("up-a", ResetMidStream(after_chunks=3))
    started = time.monotonic()
    status, headers, events = stream_events(router)
    assert time.monotonic() - started < 5
    assert status == 200 and headers["x-agent-router-deployment"] == "a"
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] and error["message"]
    assert tried(upstream, "up-a", "up-b") == [1, 0], "no fallback once bytes reached the client"


def test_stream_that_stalls_after_the_first_byte_ends_within_the_chunk_timeout(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, timeout=0.5))
    upstream.queue("up-a", SlowStream(delay=3))
    started = time.monotonic()
    _, _, events = stream_events(router)
    assert time.monotonic() - started < 2.5
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "upstream_timeout"


def test_stream_hanging_before_the_first_byte_respects_the_deadline(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, timeout=20, deadline=1.5))
    upstream.always("*", Hang(10))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        list(router.client().chat.completions.create(model="chat", messages=USER, stream=True))
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 3.5


# -- pure: policy, summaries, capability screening ----------------------------------------------------------

def test_next_step_per_error_class():
    assert next_step(UpstreamConnectionError("reset")) is Step.RETRY_SAME
    assert next_step(UpstreamServerError("boom", upstream_status=503)) is Step.RETRY_SAME
    assert next_step(UpstreamServerError("not json")) is Step.NEXT
    assert next_step(UpstreamConnectionLost("dropped after sending")) is Step.NEXT
    assert next_step(UpstreamTimeout("slow")) is Step.NEXT
    assert next_step(UpstreamRateLimited("429", retry_after=1)) is Step.NEXT
    assert next_step(ContentRefused("no")) is Step.NEXT
    assert next_step(ContextWindowExceeded("long")) is Step.NEXT_LARGER
    from router.errors import UpstreamBadRequest

    assert next_step(UpstreamBadRequest("bad")) is Step.STOP


def test_backoff_is_jittered_and_capped():
    delays = [backoff_delay(5, 0.1, 0.5) for _ in range(200)]
    assert max(delays) <= 0.5 and len(set(delays)) > 100


def test_final_error_picks_the_most_meaningful_status():
    def fail(*errors):
        return [Failure(f"d{i}", e) for i, e in enumerate(errors)]

    limited = final_error(fail(UpstreamRateLimited("x", retry_after=9), UpstreamRateLimited("y", retry_after=4)), [])
    assert limited.status == 429 and limited.headers() == {"retry-after": "4"}
    assert final_error(fail(UpstreamTimeout("t"), UpstreamTimeout("t")), []).status == 504
    mix = final_error(fail(UpstreamTimeout("t"), UpstreamServerError("s", upstream_status=500)), [])
    assert (mix.status, mix.code) == (502, "all_deployments_failed")
    assert final_error([], [Skip("d", "cooling", "cooldown")]).status == 503
    assert final_error([], [Skip("d", "too long", "context_window")]).code == "context_length_exceeded"


def test_screen_skips_what_a_deployment_cannot_do_and_assumes_unknown_is_yes():
    deployments = {
        "notools": DeploymentSpec(provider="p", model="x-unknown-1", supports=Capabilities(tools=False)),
        "noparallel": DeploymentSpec(provider="p", model="x-unknown-2",
                                     supports=Capabilities(parallel_tool_calls=False)),
        "unknown": DeploymentSpec(provider="p", model="x-unknown-3"),
    }
    payload = {"messages": USER, "tools": [{"type": "function", "function": {"name": "f"}}],
               "parallel_tool_calls": True}
    ctx = SimpleNamespace(payload=payload, prompt_estimate=None, prompt_token_bounds=None, wire="chat", body_bytes=0,
                          snapshot=SimpleNamespace(deployments=deployments))
    fit, unfit = screen(ctx, ("notools", "noparallel", "unknown"))
    assert fit == ["unknown"]
    assert [(u.deployment, u.reason) for u in unfit] == [("notools", "does not support tools"),
                                                        ("noparallel", "does not support parallel tool calls")]
    assert request_needs({"messages": USER}).any is False


def test_every_attempt_is_counted_in_and_out_of_the_deployment_stats(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, retries=0))
    upstream.queue("up-a", Error(500), Text("ok"), SlowStream(delay=0.2, content="a long slow answer here"))
    ask(router)  # a fails, b serves
    ask(router)  # a serves
    with router.http() as http, http.stream("POST", "/v1/chat/completions",
                                            headers={"authorization": "Bearer test-key"},
                                            json={"model": "chat", "messages": USER, "stream": True}) as resp:
        next(resp.iter_lines())  # the client leaves after the first event
    stats = router.state.stats
    assert wait_until(lambda: stats.in_flight("a") == 0)
    assert stats.in_flight("b") == 0
    assert stats.get("a").failures >= 1 and stats.get("a").successes == 1
    assert stats.get("b").successes == 1 and stats.latency_ms("b") is not None


