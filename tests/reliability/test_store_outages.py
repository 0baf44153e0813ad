"""PostgreSQL and Redis refused, reset and blackholed through TCP proxies while a router process is under load
(issue 11, items 3, 4 and 5): no 500, no request hung, every answered request's record kept, shutdown bounded,
and ``/readyz`` telling the truth."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.configs import TEST_KEY_HASH
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterProcess, wait_until, write_config
from tests.reliability import load
from tests.reliability.process import STARTUP, recorded_request_ids, signal_and_wait
from tests.reliability.scale import size
from tests.reliability.stores import ProxiedStores, proxied_stores

pytestmark = pytest.mark.reliability

ADMIN_KEY = "admin-secret-for-outages"
DRAIN_TIMEOUT = 3.0
DEADLINE = 10


def _config(base_url: str) -> str:
    # A role limit far above the load: every request goes through Redis admission, none is refused by it.
    return f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-upstream-secret, timeout: 5}}
deployments:
  primary: {{provider: fake, model: up-primary}}
models:
  fast: [primary]
routing: {{deadline_seconds: {DEADLINE}}}
roles:
  tester: {{models: ["*"], tools: {{allow: ["*"]}}, limits: {{requests_per_minute: 10000000}}}}
agents:
  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}]}}
"""


def _router(upstream: FakeUpstream, tmp_path: Path, stores: ProxiedStores) -> RouterProcess:
    config = write_config(_config(upstream.openai_base_url), str(tmp_path))
    env = {**stores.env, "AGENT_ROUTER_WATCH_CONFIG": "false", "AGENT_ROUTER_ADMIN_KEY": ADMIN_KEY,
           "AGENT_ROUTER_LEDGER_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT), "AGENT_ROUTER_LEDGER_FLUSH_INTERVAL": "0.2"}
    return RouterProcess(config, env=env)


def _mixed(i: int) -> dict[str, object]:
    return load.chat_body(stream=i % 4 == 0)


def _assert_served_through(report: load.LoadReport) -> None:
    assert report.statuses()[0] == 0, f"requests hung or lost their connection: {report.summary()}"
    assert not [o for o in report.outcomes if o.status >= 500], report.summary()
    assert not [o for o in report.outcomes if o.error and o.error.startswith("not-openai")], report.summary()


def test_stores_refused_and_reset_under_load(upstream: FakeUpstream, tmp_path: Path) -> None:
    faults = size(4, 30)
    with proxied_stores() as stores:
        router = _router(upstream, tmp_path, stores).start(STARTUP)
        try:
            with load.BackgroundLoad(router.url, _mixed, 10_000_000, concurrency=12, hang_guard=DEADLINE + 30) as run:
                for fault in range(faults):
                    time.sleep(0.3)
                    if fault % 3 == 0:
                        for _ in range(5):  # resets while commands are in flight
                            stores.redis.reset()
                            time.sleep(0.05)
                        stores.postgres.reset()
                    else:
                        proxy = stores.redis if fault % 3 == 1 else stores.postgres
                        proxy.set_mode("refuse")
                        time.sleep(1.0)
                        proxy.set_mode("pass")
                time.sleep(1.0)  # the writer's retry after the last outage
                report = run.stop()
            code, seconds = signal_and_wait(router, signal.SIGTERM)
        finally:
            router.stop()
        recorded = recorded_request_ids(stores.database_url)
    answered = report.answered_ids()
    print(f"\n{faults} store faults; {report.summary()}; {len(answered - recorded)} records missing; "
          f"shutdown {seconds:.2f}s")
    _assert_served_through(report)
    assert code in (0, -signal.SIGTERM), router.output()
    assert answered <= recorded, f"{len(answered - recorded)} answered requests have no record"


def test_a_database_blackhole_bounds_shutdown_and_loses_no_record(upstream: FakeUpstream, tmp_path: Path) -> None:
    with proxied_stores() as stores:
        router = _router(upstream, tmp_path, stores).start(STARTUP)
        try:
            with load.BackgroundLoad(router.url, _mixed, 10_000_000, concurrency=12, hang_guard=DEADLINE + 30) as run:
                assert wait_until(lambda: run.answered() >= 50, timeout=60)
                stores.postgres.set_mode("blackhole")
                blackholed = run.answered()
                assert wait_until(lambda: run.answered() >= blackholed + size(100, 3_000), timeout=300)
                readiness: list[httpx.Response] = []

                def not_ready() -> bool:
                    # Readiness pings the stores in the background (about one a second): a blackhole shows
                    # within a few seconds, not at once.
                    answer = http.get("/readyz", headers={"authorization": f"Bearer {ADMIN_KEY}"})
                    readiness.append(answer)
                    return answer.status_code == 503 or answer.json()["status"] != "ready"

                with httpx.Client(base_url=router.url, timeout=30) as http:
                    wait_until(not_ready, timeout=30)
                ready = readiness[-1]
                report = run.stop()
            code, seconds = signal_and_wait(router, signal.SIGTERM, hang_guard=DRAIN_TIMEOUT + 12)
            stores.postgres.set_mode("pass")
            router.start(STARTUP)  # the next start replays what the last shutdown could not write
            wait_until(lambda: report.answered_ids() <= recorded_request_ids(stores.database_url), 10)
        finally:
            router.stop()
        recorded = recorded_request_ids(stores.database_url)
    answered = report.answered_ids()
    print(f"\nblackhole: {report.summary()}; SIGTERM took {seconds:.2f}s (exit {code}); "
          f"{len(answered - recorded)} records missing; readyz {ready.status_code} {ready.text[:300]}")
    _assert_served_through(report)
    assert ready.status_code == 503 or ready.json()["status"] != "ready", ready.text
    assert code is not None, f"SIGTERM did not end the process within {DRAIN_TIMEOUT + 12}s"
    assert seconds <= DRAIN_TIMEOUT + 10
    assert answered <= recorded, f"{len(answered - recorded)} answered requests have no record"


def test_a_redis_blackhole_hangs_no_request(upstream: FakeUpstream, tmp_path: Path) -> None:
    with proxied_stores() as stores:
        router = _router(upstream, tmp_path, stores).start(STARTUP)
        try:
            with load.BackgroundLoad(router.url, _mixed, 10_000_000, concurrency=12, hang_guard=DEADLINE + 30) as run:
                assert wait_until(lambda: run.answered() >= 50, timeout=60)
                stores.redis.set_mode("blackhole")
                time.sleep(size(2, 20))
                stores.redis.set_mode("pass")
                time.sleep(1.0)
                report = run.stop()
            code, seconds = signal_and_wait(router, signal.SIGTERM, hang_guard=DRAIN_TIMEOUT + 12)
        finally:
            router.stop()
    print(f"\nRedis blackhole: {report.summary()}; shutdown {seconds:.2f}s")
    _assert_served_through(report)
    assert max(o.seconds for o in report.outcomes) <= DEADLINE + 5, "a request outlived its deadline"
    assert code is not None and seconds <= DRAIN_TIMEOUT + 10
