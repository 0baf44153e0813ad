"""Rate limits and budgets per agent and role, in memory and on the real Redis, end to end over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import openai
import pytest
import redis

from router.config import load_snapshot
from router.context import Attempt, RequestContext
from router.limits import Limits
from router.limits.checks import checks_for, period_bounds, scopes_for
from router.limits.refusals import duration, usd
from router.limits.spend import tokens_used
from router.settings import Settings
from router.store.counters import Gate, MemoryCounters, RedisCounters
from tests.backing_services import REDIS_URL, redis_prefix
from tests.configs import TEST_KEY_HASH
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer, free_port, write_config

PRICES = "{input_per_million: 1000, output_per_million: 2000}"
"""A default fake answer (11 prompt + 7 completion tokens) costs 0.011 + 0.014 = $0.025."""


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def limits_config(base_url: str, *, role: str = "{}", agent: str = "{}", other: str = "{}",
                  defaults: str = "{}") -> str:
    """Role ``tester`` with agents ``test-agent`` (key ``test-key``) and ``other-agent`` (``other-key``)."""
    return f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-upstream-secret, timeout: 5}}
deployments:
  primary: {{provider: fake, model: up-primary, prices: {PRICES}}}
models:
  fast: [primary]
roles:
  tester:
    models: ["*"]
    limits: {role}
agents:
  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}], limits: {agent}}}
  other-agent: {{role: tester, keys: [{{hash: "{key_hash('other-key')}"}}], limits: {other}}}
limits:
  agent_defaults: {defaults}
"""


@pytest.fixture(params=["memory", "redis"])
def counters_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Router settings for each counter store: process memory, or the real Redis under a prefix of its own."""
    if request.param == "memory":
        yield {}
        return
    with redis_prefix() as prefix:
        yield {"redis_url": REDIS_URL, "redis_prefix": prefix}


def ask(router: RouterServer, key: str = "test-key", **kwargs: Any) -> Any:
    return router.client(api_key=key).chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "hi"}], **kwargs)


def refused(router: RouterServer, key: str = "test-key", error: type[Exception] = openai.RateLimitError) -> Any:
    with pytest.raises(error) as caught:
        ask(router, key)
    return caught.value


def counted(router: RouterServer, key: str) -> float:
    """A counter as the router's store holds it (read from outside, not through the router's loop)."""
    settings = router.settings
    if settings.redis_url is None:
        return asyncio.run(router.state.counters.get_many([key]))[0]
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        return float(client.get(settings.redis_prefix + key) or 0)
    finally:
        client.close()


def settled(router: RouterServer, key: str, expected: float) -> None:
    """Tokens and spend are counted in a background task just after each answer: wait until it has landed."""
    deadline = time.monotonic() + 5
    while abs(counted(router, key) - expected) > 1e-9:
        assert time.monotonic() < deadline, f"{key} stayed at {counted(router, key)}, expected {expected}"
        time.sleep(0.02)


def test_requests_per_minute_refuses_with_retry_after(upstream: FakeUpstream, start_router: Callable[..., Any],
                                                      counters_settings: dict[str, Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, role="{requests_per_minute: 3}"),
                          **counters_settings)
    for _ in range(3):
        assert ask(router).choices[0].message.content
    exc = refused(router)
    assert exc.status_code == 429
    retry_after = int(exc.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    error = exc.response.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "role 'tester'" in error["message"] and "requests per minute: limit 3" in error["message"]
    assert len(upstream.served()) == 3, "a refused request never reaches the provider"


def test_tokens_per_minute_counts_what_answers_used(upstream: FakeUpstream, start_router: Callable[..., Any],
                                                    counters_settings: dict[str, Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, agent="{tokens_per_minute: 30}"),
                          **counters_settings)
    ask(router)
    settled(router, "limits:agent:test-agent:tpm", 18)
    # A stream counts too: the router asks the upstream for usage even when the client does not.
    chunks = list(ask(router, stream=True))
    assert all(chunk.usage is None for chunk in chunks)
    settled(router, "limits:agent:test-agent:tpm", 36)
    exc = refused(router)
    error = exc.response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "agent 'test-agent' on tokens per minute: limit 30, used 36" in error["message"]
    assert 1 <= int(exc.response.headers["retry-after"]) <= 60
    assert ask(router, key="other-key").choices, "another agent has its own token window"


def test_daily_budget_says_which_budget(upstream: FakeUpstream, start_router: Callable[..., Any],
                                        counters_settings: dict[str, Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, agent="{usd_per_day: 0.04}"),
                          **counters_settings)
    day_key = f"limits:agent:test-agent:usd:{datetime.now(UTC):%Y-%m-%d}"
    ask(router)
    settled(router, day_key, 0.025)
    ask(router)  # $0.025 spent of $0.04: still under
    settled(router, day_key, 0.05)
    exc = refused(router)
    error = exc.response.json()["error"]
    assert exc.status_code == 429 and error["code"] == "budget_exceeded"
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert f"agent 'test-agent': daily budget $0.04 (UTC day {today}), spent $0.05" in error["message"]
    _, midnight = period_bounds(datetime.now(UTC))["usd_day"]
    assert abs(int(exc.response.headers["retry-after"]) - (midnight - datetime.now(UTC)).total_seconds()) < 5
    assert len(upstream.served()) == 2


def test_monthly_role_budget_is_shared_by_the_role(upstream: FakeUpstream, start_router: Callable[..., Any],
                                                   counters_settings: dict[str, Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, role="{usd_per_month: 0.02}"),
                          **counters_settings)
    ask(router)
    settled(router, f"limits:role:tester:usd:{datetime.now(UTC):%Y-%m}", 0.025)
    exc = refused(router, key="other-key")
    message = exc.response.json()["error"]["message"]
    assert "role 'tester': monthly budget $0.02" in message and "spent $0.03" in message


def test_agent_and_role_limits_both_apply(upstream: FakeUpstream, start_router: Callable[..., Any],
                                          counters_settings: dict[str, Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, role="{requests_per_minute: 4}",
                                        agent="{requests_per_minute: 2}"), **counters_settings)
    ask(router)
    ask(router)
    assert "agent 'test-agent'" in refused(router).response.json()["error"]["message"]
    # The refused request was not counted against the role: the other agent still gets the role's last two.
    ask(router, key="other-key")
    ask(router, key="other-key")
    assert "role 'tester'" in refused(router, key="other-key").response.json()["error"]["message"]
    assert len(upstream.served()) == 4


def test_agent_defaults_fill_in_for_agents_without_their_own(upstream: FakeUpstream,
                                                             start_router: Callable[..., Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, agent="{requests_per_minute: 2}",
                                        defaults="{requests_per_minute: 1}"))
    ask(router, key="other-key")
    assert "agent 'other-agent'" in refused(router, key="other-key").response.json()["error"]["message"]
    ask(router)
    ask(router)
    refused(router)


def test_admin_sees_what_each_scope_has_used(upstream: FakeUpstream, start_router: Callable[..., Any],
                                            counters_settings: dict[str, Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, role="{requests_per_minute: 5, usd_per_day: 1}",
                                        agent="{tokens_per_minute: 1000}"), admin_key="admin-secret",
                          **counters_settings)
    ask(router)
    ask(router, key="other-key")
    settled(router, "limits:agent:test-agent:tpm", 18)
    with router.http() as http:
        assert http.get("/admin/limits").status_code == 401
        view = http.get("/admin/limits", headers={"authorization": "Bearer admin-secret"}).json()
    scopes = {(row["kind"], row["name"]): row["limits"] for row in view["scopes"]}
    assert set(scopes) == {("agent", "test-agent"), ("role", "tester")}
    assert scopes[("role", "tester")]["requests_per_minute"] == {"limit": 5, "used": 2}
    assert scopes[("agent", "test-agent")]["tokens_per_minute"] == {"limit": 1000, "used": 18}
    day = scopes[("role", "tester")]["usd_per_day"]
    assert day["limit"] == 1 and day["period"] == f"{datetime.now(UTC):%Y-%m-%d}"


# -- the counter store goes away ---------------------------------------------------------------------------
def unreachable_redis() -> dict[str, Any]:
    return {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_prefix": "ar-test-down:"}


def test_redis_down_fails_open_by_default(upstream: FakeUpstream, start_router: Callable[..., Any],
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="agent_router.limits")
    router = start_router(limits_config(upstream.openai_base_url, role="{requests_per_minute: 1}"),
                          admin_key="adm", **unreachable_redis())
    for _ in range(3):
        assert ask(router).choices, "fail open: limits are not enforced, requests pass"
    with router.http(headers={"x-admin-key": "adm"}) as http:
        ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["limits"].startswith("degraded: redis unreachable")
    outage_logs = [r for r in caplog.records if "counter store is unreachable" in r.getMessage()]
    assert len(outage_logs) == 1, "one log line per outage, not one per request"


def test_redis_down_fails_closed_when_configured(upstream: FakeUpstream, start_router: Callable[..., Any]) -> None:
    router = start_router(limits_config(upstream.openai_base_url, agent="{requests_per_minute: 100}",
                                        other="{usd_per_day: 5}"),
                          limits_fail_open=False, budgets_fail_open=True, **unreachable_redis())
    exc = refused(router, error=openai.InternalServerError)
    assert exc.status_code == 503 and exc.response.headers["retry-after"]
    error = exc.response.json()["error"]
    assert error["code"] == "limits_unavailable" and error["type"] == "service_unavailable"
    assert "rate limits cannot be checked" in error["message"] and "LIMITS_FAIL_OPEN" in error["message"]
    assert ask(router, key="other-key").choices, "budgets still fail open, and other-agent has only a budget"
    assert len(upstream.served()) == 1
    with router.http() as http:
        assert http.get("/healthz").status_code == 200


def test_limits_resume_when_redis_comes_back(upstream: FakeUpstream, start_router: Callable[..., Any]) -> None:
    settings = unreachable_redis()
    port = int(settings["redis_url"].rsplit(":", 1)[1].split("/")[0])
    router = start_router(limits_config(upstream.openai_base_url, role="{requests_per_minute: 1}"), admin_key="adm",
                          **settings)
    ask(router)
    ask(router)
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        with router.http(headers={"x-admin-key": "adm"}) as http:
            while http.get("/readyz").json()["checks"]["limits"] != "ok (redis)":
                assert time.monotonic() < deadline, "limits did not notice that Redis is back"
                time.sleep(0.1)
        ask(router)
        refused(router)
    finally:
        redis.terminate()
        redis.wait(10)


# -- the pieces, without HTTP --------------------------------------------------------------------------------
def test_budget_periods_are_utc_calendar_days_and_months() -> None:
    bounds = period_bounds(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert bounds["usd_day"] == ("2026-12-31", datetime(2027, 1, 1, tzinfo=UTC))
    assert bounds["usd_month"] == ("2026-12", datetime(2027, 1, 1, tzinfo=UTC))
    assert period_bounds(datetime(2026, 2, 10, tzinfo=UTC))["usd_month"][1] == datetime(2026, 3, 1, tzinfo=UTC)



def test_budget_periods_roll_over_at_midnight_though_remembered_during_the_day() -> None:
    from datetime import timedelta, timezone

    evening = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert period_bounds(evening) is period_bounds(evening - timedelta(hours=20))  # one day, one answer
    assert period_bounds(evening + timedelta(seconds=1))["usd_day"] == ("2027-01-01", datetime(2027, 1, 2, tzinfo=UTC))
    assert period_bounds(evening + timedelta(seconds=1))["usd_month"][0] == "2027-01"
    assert period_bounds(evening)["usd_day"][0] == "2026-12-31"
    elsewhere = datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5)))  # not UTC: computed, not cached
    assert period_bounds(elsewhere)["usd_day"][0] == "2027-01-01"
    assert period_bounds(evening)["usd_day"][0] == "2026-12-31"


def test_budget_keys_carry_their_period_and_outlive_it(tmp_path: Any, upstream: FakeUpstream) -> None:
    snapshot = load_snapshot(str(write_config(limits_config(
        upstream.openai_base_url, role="{usd_per_day: 1, usd_per_month: 10, requests_per_minute: 5}"),
        str(tmp_path))))
    now = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    checks = {check.metric: check for check in checks_for(scopes_for(snapshot, "test-agent", "tester"), now)}
    assert set(checks) == {"rpm", "usd_day", "usd_month"}
    assert checks["usd_day"].gate.key == "limits:role:tester:usd:2026-11-29"
    assert checks["usd_month"].gate.key == "limits:role:tester:usd:2026-11"
    assert 3600 < checks["usd_day"].gate.ttl <= 2 * 3600
    assert checks["rpm"].gate == Gate("limits:role:tester:rpm", 1, 5, 60.0)


async def _take_is_all_or_nothing(counters: Any) -> None:
    gates = [Gate("a", 1, 2, 60), Gate("b", 1, 1, 60)]
    assert await counters.take(gates) is None
    refusal = await counters.take(gates)
    assert refusal is not None and refusal.gate == 1 and refusal.value == 1 and 0 < refusal.ttl <= 60
    assert await counters.get_many(["a", "b"]) == [1.0, 1.0], "a refused take adds nothing"
    await counters.add("spent", 0.75, 60)
    assert (await counters.take([Gate("spent", 0, 0.5, 60)])).value == 0.75  # type: ignore[union-attr]


def test_take_is_all_or_nothing_in_memory() -> None:
    asyncio.run(_take_is_all_or_nothing(MemoryCounters()))


def test_take_is_all_or_nothing_on_redis() -> None:
    async def run(prefix: str) -> None:
        counters = RedisCounters(REDIS_URL, prefix)
        try:
            await _take_is_all_or_nothing(counters)
        finally:
            await counters.close()

    with redis_prefix() as prefix:
        asyncio.run(run(prefix))


def test_callers_without_caps_cost_no_round_trip(tmp_path: Any, upstream: FakeUpstream) -> None:
    """With the counter store unreachable, an uncapped caller passes without the router even noticing."""
    snapshot = load_snapshot(str(write_config(limits_config(upstream.openai_base_url), str(tmp_path))))

    async def run() -> None:
        counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0")
        limits = Limits(counters, Settings(_env_file=None))  # type: ignore[call-arg]
        ctx = RequestContext("r1", snapshot, {}, False, "fast", agent="test-agent", role="tester")
        await limits.admit(ctx)
        ctx.attempts.append(Attempt("primary", "fake", "up-primary", status="ok"))
        ctx.usage = {"prompt_tokens": 11, "completion_tokens": 7}
        limits.settle(ctx)
        assert not limits.outage.down and limits.health() == {"limits": "ok (redis)"}
        await limits.close()
        await counters.close()

    asyncio.run(run())


def test_tokens_a_request_used(tmp_path: Any, upstream: FakeUpstream) -> None:
    snapshot = load_snapshot(str(write_config(limits_config(upstream.openai_base_url), str(tmp_path))))
    ctx = RequestContext("r1", snapshot, {}, False, "fast")
    ctx.prompt_estimate = 42
    assert tokens_used(ctx) == 0, "nothing served, nothing used"
    ctx.attempts.append(Attempt("primary", "fake", "up-primary", status="ok"))
    assert tokens_used(ctx) == 42, "no usage reported: the prompt estimate counts"
    ctx.usage = {"prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 400}}
    assert tokens_used(ctx) == 1500


def test_refusal_durations_read_like_a_clock() -> None:
    assert [duration(s) for s in (0.2, 59.2, 61, 3 * 3600 + 120, 3 * 86400 + 5000)] == ["1s", "1m", "1m1s", "3h2m",
                                                                                        "3d1h"]
    assert usd(0.04) == "$0.04" and usd(0.000123) == "$0.000123" and usd(1234.5) == "$1,234.50"
