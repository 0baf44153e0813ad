"""Two replicas on one Redis and one PostgreSQL under concurrent load: a shared role limit admits exactly N,
and the ledger of both adds up (issue 11: the trial admitted exactly 600 of 56,074)."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import pytest

from tests.configs import TEST_KEY_HASH
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterProcess, write_config
from tests.reliability import load
from tests.reliability.process import STARTUP, recorded_request_ids
from tests.reliability.scale import size
from tests.reliability.stores import proxied_stores

pytestmark = pytest.mark.reliability


def _config(base_url: str, limit: int) -> str:
    return f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-upstream-secret, timeout: 10}}
deployments:
  primary: {{provider: fake, model: up-primary}}
models:
  fast: [primary]
roles:
  tester: {{models: ["*"], limits: {{requests_per_minute: {limit}}}}}
agents:
  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}]}}
"""


WINDOW_SHARE = 40.0
"""Rate windows are fixed, 60 s from the first write: the load stops sending after this many seconds so that it
stays inside one window however slow the machine is (a bound on the load, not an assertion on time)."""


async def _both(urls: list[str], each: int) -> list[load.LoadReport]:
    stop = threading.Event()
    timer = threading.Timer(WINDOW_SHARE, stop.set)
    timer.start()
    try:
        return list(await asyncio.gather(*(load.drive(url, lambda i: load.chat_body(stream=i % 5 == 0), each,
                                                      concurrency=12, hang_guard=15, stop=stop) for url in urls)))
    finally:
        timer.cancel()


def test_a_shared_limit_admits_exactly_n_across_two_replicas(upstream: FakeUpstream, tmp_path: Path) -> None:
    limit, each = size(60, 600), size(150, 5_000)
    config = write_config(_config(upstream.openai_base_url, limit), str(tmp_path))
    with proxied_stores() as stores:  # the proxies stay in "pass": the same path as the outage trials
        env = {**stores.env, "AGENT_ROUTER_WATCH_CONFIG": "false"}
        replicas = [RouterProcess(config, env=env) for _ in range(2)]
        try:
            for replica in replicas:  # started inside the try: one that started is stopped even if the other fails
                replica.start(STARTUP)
            reports = asyncio.run(_both([r.url for r in replicas], each))
        finally:
            codes = [r.stop() for r in replicas]
        recorded = recorded_request_ids(stores.database_url)
    statuses = [report.statuses() for report in reports]
    admitted = sum(s[200] for s in statuses)
    sent = sum(len(r.outcomes) for r in reports)
    print(f"\nfleet: limit {limit}, sent {sent}, admitted {admitted}, per replica {statuses}")
    assert all(code in (0, -signal.SIGTERM) for code in codes)
    assert all(set(s) <= {200, 429} for s in statuses), statuses
    assert sent > limit, "too few requests to reach the limit"
    assert admitted == limit
    assert len(upstream.served("up-primary")) == limit
    # Refused requests have their row too (kind 'request', status 429): every request of both replicas.
    assert sent == len(recorded)
