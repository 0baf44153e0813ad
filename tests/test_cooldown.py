"""Circuit breaker per deployment, end to end, in memory and against the real Redis on 127.0.0.1:6379.

A deployment that keeps failing is cooled down so later requests skip it; after the cooldown one probe is
let through: success closes the breaker, failure reopens it. With Redis, replicas share the state.
"""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from tests.configs import with_test_identity
from tests.fakes.behaviours import Error, openai_error
from tests.harness import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
USER = [{"role": "user", "content": "hello"}]
COOLDOWN = 1.0


def config(base_url: str) -> str:
    return with_test_identity(f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: 5}}
deployments:
  a: {{provider: fake, model: up-a}}
  b: {{provider: fake, model: up-b}}
models:
  chat: [a, b]
  b-only: [b]
routing:
  retries: 0
  cooldown: {{failures: 2, min_requests: 2, window_seconds: 30, cooldown_seconds: {COOLDOWN}}}
""")


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return {"redis_url": REDIS_URL, "redis_prefix": f"test-cooldown-{uuid.uuid4().hex}:"}


def ask(router, model: str = "chat") -> dict[str, str]:
    with router.client() as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=USER)
    return {"deployment": raw.headers["x-agent-router-deployment"], "attempts": raw.headers["x-agent-router-attempts"]}


def fail(router, model: str = "chat") -> None:
    with pytest.raises(openai.APIStatusError):
        ask(router, model)


def test_repeated_faults_cool_a_deployment_down_then_a_probe_closes_it(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url), **backend)
    upstream.always("up-a", Error(500))
    assert ask(router) == {"deployment": "b", "attempts": "2"}
    assert ask(router) == {"deployment": "b", "attempts": "2"}  # second fault: a opens
    assert ask(router) == {"deployment": "b", "attempts": "1"}, "a is skipped while cooling down"
    assert len(upstream.served("up-a")) == 2
    upstream.always("up-a", None)
    time.sleep(COOLDOWN + 0.2)
    assert ask(router) == {"deployment": "a", "attempts": "1"}, "the half-open probe goes through"
    assert ask(router) == {"deployment": "a", "attempts": "1"}, "its success closed the breaker"


def test_a_failed_probe_reopens_at_once(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url), **backend)
    upstream.always("up-a", Error(503))
    ask(router)
    ask(router)
    time.sleep(COOLDOWN + 0.2)
    assert ask(router) == {"deployment": "b", "attempts": "2"}, "one probe of a, which fails"
    assert ask(router) == {"deployment": "b", "attempts": "1"}, "one failed probe is enough to reopen"
    assert len(upstream.served("up-a")) == 3


def test_when_everything_cools_the_least_recently_failed_is_tried_first(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url), **backend)
    upstream.always("up-a", Error(500))
    upstream.always("up-b", Error(500))
    fail(router, "b-only")
    fail(router, "b-only")  # b opens first
    time.sleep(0.05)
    fail(router)  # a fails (1); b is skipped, as a is still usable
    fail(router)  # a opens; now every deployment of 'chat' is cooling down
    upstream.always("up-a", None)
    upstream.always("up-b", None)
    assert ask(router) == {"deployment": "b", "attempts": "1"}, "tried anyway, oldest failure first"


def test_the_callers_mistakes_do_not_cool_a_deployment(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url), **backend)
    upstream.always("up-a", Error(400, openai_error("messages must not be empty")))
    for _ in range(4):
        with pytest.raises(openai.BadRequestError):
            ask(router)
    upstream.always("up-a", None)
    assert ask(router) == {"deployment": "a", "attempts": "1"}


def test_replicas_share_cooldowns_through_redis(upstream, start_router):
    shared = {"redis_url": REDIS_URL, "redis_prefix": f"test-cooldown-{uuid.uuid4().hex}:"}
    first = start_router(config(upstream.openai_base_url), **shared)
    second = start_router(config(upstream.openai_base_url), **shared)
    upstream.always("up-a", Error(502))
    ask(first)
    ask(first)
    assert ask(second) == {"deployment": "b", "attempts": "1"}, "the other replica skips a too"
    assert len(upstream.served("up-a")) == 2


def test_unreachable_redis_falls_back_to_local_memory(upstream, start_router):
    dead = {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_prefix": "test-cooldown-dead:"}
    router = start_router(config(upstream.openai_base_url), **dead)
    upstream.always("up-a", Error(500))
    started = time.monotonic()
    assert ask(router)["deployment"] == "b"
    ask(router)
    assert ask(router) == {"deployment": "b", "attempts": "1"}, "cooled down in local memory"
    assert time.monotonic() - started < 5


def test_cooldown_state_lives_in_redis_under_the_prefix(upstream, start_router):
    import redis

    prefix = f"test-cooldown-{uuid.uuid4().hex}:"
    router = start_router(config(upstream.openai_base_url), redis_url=REDIS_URL, redis_prefix=prefix)
    upstream.always("up-a", Error(500))
    ask(router)
    ask(router)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert client.exists(f"{prefix}cooldown:open:a") and client.exists(f"{prefix}cooldown:tripped:a")
        assert 0 < client.pttl(f"{prefix}cooldown:open:a") <= COOLDOWN * 1000
    finally:
        client.close()


def test_only_one_probe_at_a_time_when_half_open():
    import asyncio

    from router.config.schema import CooldownSpec
    from router.cooldown import CircuitBreaker
    from router.store.counters import MemoryCounters

    async def scenario() -> None:
        breaker = CircuitBreaker(MemoryCounters())
        spec = CooldownSpec(failures=1, min_requests=1, window_seconds=10, cooldown_seconds=0.05)
        assert await breaker.failed("a", spec) is True
        assert (await breaker.view(["a", "b"])).cooling == ["a"]
        await asyncio.sleep(0.1)
        view = await breaker.view(["a", "b"])
        assert view.usable == ["a", "b"] and view.half_open == {"a"}
        assert await breaker.claim_probe("a", 5) is True
        assert await breaker.claim_probe("a", 5) is False
        await breaker.succeeded("a")
        assert await breaker.state("a") == "closed"

    asyncio.run(scenario())
