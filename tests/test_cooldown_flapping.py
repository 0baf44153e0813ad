"""Cooldowns that do not flap (issue 11, item 2), in memory and on the real Redis.

A breaker opens on a failure ratio, not a bare count, so a busy deployment with a few errors stays in
service; when every deployment is cooling down and they are tried anyway, retries still work and the first
success closes the breaker; a burst of faults writes a bounded number of log lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.backing_services import REDIS_URL, redis_prefix
from tests.breaker_helpers import breaker_state, counters_backend
from tests.configs import with_test_identity
from tests.fakes.behaviours import Behaviour, Error, Text

USER = [{"role": "user", "content": "hello"}]


def config(base_url: str, cooldown: str, retries: int = 1) -> str:
    return with_test_identity(f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: 5}}
deployments:
  a: {{provider: fake, model: up-a}}
  b: {{provider: fake, model: up-b}}
  c: {{provider: fake, model: up-c}}
models:
  chat: [a, b]
  b-only: [b]
  c-then-b: [c, b]
routing:
  retries: {retries}
  backoff_base: 0
  cooldown: {cooldown}
""")


# Two faults out of two attempts open a breaker; it then stays open for the whole test.
QUICK = "{failures: 2, min_requests: 2, window_seconds: 30, cooldown_seconds: 60}"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    yield from counters_backend(request.param)


def ask(router: Any, model: str = "chat") -> dict[str, str]:
    with router.client() as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=USER)
    return {"deployment": raw.headers["x-agent-router-deployment"], "attempts": raw.headers["x-agent-router-attempts"]}


def cool_everything_down(router: Any, upstream: Any, backend: dict[str, str]) -> None:
    upstream.always("up-a", Error(500))
    upstream.always("up-b", Error(500))
    with pytest.raises(openai.APIStatusError):
        ask(router)  # a: fault, retried fault (opens); b: the same
    assert breaker_state(router, backend, "a") == breaker_state(router, backend, "b") == "open"
    upstream.always("up-a", None)
    upstream.always("up-b", None)


def test_when_everything_cools_the_first_success_closes_the_breaker(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url, QUICK), **backend)
    cool_everything_down(router, upstream, backend)
    assert ask(router) == {"deployment": "a", "attempts": "1"}, "tried anyway, and the upstream has recovered"
    assert breaker_state(router, backend, "a") == "closed", "the forced probe's success closed the breaker"
    assert breaker_state(router, backend, "b") == "open", "b was not tried: still cooling down"
    upstream.queue("up-a", Error(500))
    assert ask(router) == {"deployment": "a", "attempts": "2"}, "no longer a probe: a transient fault is retried"
    assert breaker_state(router, backend, "a") == "closed"


def test_when_everything_cools_a_transient_fault_is_still_retried(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url, QUICK), **backend)
    cool_everything_down(router, upstream, backend)
    upstream.queue("up-b", Error(500))
    assert ask(router, "b-only") == {"deployment": "b", "attempts": "2"}, "the 500 was retried on b"
    assert breaker_state(router, backend, "b") == "closed"


def test_a_few_errors_under_load_never_open_while_a_dead_deployment_does(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url, "{window_seconds: 30, cooldown_seconds: 60}",
                                 retries=0), **backend)
    requests = 300
    script: list[Behaviour] = [Error(500) if i % 50 == 49 else Text() for i in range(requests)]  # 2% errors
    upstream.queue("up-a", *script)

    def send(count: int) -> list[str]:
        return [ask(router)["deployment"] for _ in range(count)]

    with ThreadPoolExecutor(4) as pool:
        served = [d for batch in pool.map(send, [requests // 4] * 4) for d in batch]
    assert len(upstream.served("up-a")) == requests, "a was never skipped"
    assert served.count("b") == requests // 50, "only the failed attempts fell back"
    assert breaker_state(router, backend, "a") == "closed"

    upstream.always("up-c", Error(500))
    for _ in range(15):
        assert ask(router, "c-then-b")["deployment"] == "b"
    assert breaker_state(router, backend, "c") == "open"
    assert len(upstream.served("up-c")) == 10, "opened at min_requests (10) attempts, all faults"


def test_a_burst_of_faults_writes_a_bounded_number_of_log_lines(upstream, start_router, backend, caplog):
    caplog.set_level(logging.INFO, logger="agent_router")
    router = start_router(config(upstream.openai_base_url, QUICK, retries=0), **backend)
    upstream.always("up-b", Error(500))
    for _ in range(40):
        with pytest.raises(openai.APIStatusError):
            ask(router, "b-only")
    assert len(upstream.served("up-b")) == 40, "tried anyway every time"
    lines = [r for r in caplog.records if r.name == "agent_router.cooldown"]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]


def test_replicas_judge_the_ratio_over_each_others_answered_attempts():
    """One replica's successes reach the shared count within FLUSH_SECONDS, so another replica's few faults
    are weighed against the fleet's traffic, not only its own."""
    import asyncio

    from router.config.schema import CooldownSpec
    from router.cooldown import FLUSH_SECONDS, CircuitBreaker
    from router.store.counters import RedisCounters

    spec = CooldownSpec(window_seconds=30, cooldown_seconds=30)  # the defaults: ratio 0.5 over >= 10, >= 3 faults

    async def scenario(prefix: str) -> None:
        stores = [RedisCounters(REDIS_URL, prefix), RedisCounters(REDIS_URL, prefix),
                  RedisCounters(REDIS_URL, prefix + "alone:")]
        busy, quiet, alone = (CircuitBreaker(store) for store in stores)
        try:
            for _ in range(100):
                assert busy.answered("a") == 0, "counted locally, nothing sent yet"
            await asyncio.sleep(FLUSH_SECONDS + 0.05)
            due = busy.answered("a")
            assert due == 101
            await busy.send_answered("a", due, spec)
            for _ in range(10):
                assert await quiet.failed("a", spec) is False, "10 faults among 111 attempts"
            assert await quiet.state("a") == "closed"
            opened = [await alone.failed("a", spec) for _ in range(10)]
            assert opened == [False] * 9 + [True], "alone, 10 faults of 10 attempts open it"
        finally:
            for store in stores:
                await store.close()

    with redis_prefix() as prefix:
        asyncio.run(scenario(prefix))
