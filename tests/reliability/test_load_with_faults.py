"""Load with faults: a flapping primary (500s, 429s, hangs, resets, garbage) in front of a healthy backup, and one
agent sending hostile bodies beside the others (issue 11, items 1, 2 and 6)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.configs import with_test_identity
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer
from tests.reliability import load
from tests.reliability.faults import HOSTILE_HASH, HOSTILE_KEY, deeply_nested, flapping, injected, many_tools
from tests.reliability.scale import size

pytestmark = pytest.mark.reliability

DEADLINE = 8
ATTEMPT_TIMEOUT = 1.0
HANG = 3.0
ROUTING = f"""
routing:
  deadline_seconds: {DEADLINE}
  retries: 1
  backoff_base: 0.01
  backoff_max: 0.05
  max_retry_after: 0
agents:
  hostile-agent: {{role: tester, keys: [{{hash: "{HOSTILE_HASH}"}}]}}
"""


def _config(upstream: FakeUpstream) -> str:
    """A two-deployment chain with room for a 10,000-tool prompt (so only a cap of ours can refuse it)."""
    return f"""
providers:
  fake: {{type: openai, base_url: {upstream.openai_base_url}, api_key: sk-upstream-secret, timeout: {ATTEMPT_TIMEOUT}}}
deployments:
  primary: {{provider: fake, model: up-primary, context_window: 2000000}}
  secondary: {{provider: fake, model: up-secondary, context_window: 2000000}}
models:
  fast: [primary, secondary]
{with_test_identity(ROUTING)}
"""


def _mixed(i: int) -> dict[str, Any]:
    return load.chat_body(stream=i % 4 == 0)


def test_a_flapping_primary_with_a_healthy_backup_fails_almost_nothing(
        upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> None:
    total = size(400, 10_000)
    schedule = flapping(total, fault_rate=0.05, seed=11, hang_seconds=HANG)
    upstream.queue("up-primary", *schedule)
    router = start_router(_config(upstream))

    report = load.run(router.url, _mixed, total, concurrency=16, hang_guard=DEADLINE + 20)

    print(f"\nfaults injected on the primary: {dict(injected(schedule))}; {report.summary()}")
    assert len(report.outcomes) == total
    assert report.statuses()[0] == 0, "a request hung past its deadline (or lost its connection)"
    assert not [o for o in report.outcomes if o.status >= 500 and o.status not in (502, 503, 504)], report.summary()
    assert max(o.seconds for o in report.outcomes) < DEADLINE + 5, "a request outlived its deadline"
    # A healthy backup is always there: a fault of the primary is retried or falls back, never the caller's.
    assert report.failure_rate() <= 0.002, report.summary()
    assert upstream.served("up-secondary"), "the backup never served: were there any faults?"


def _victim_load(router: RouterServer, total: int) -> load.LoadReport:
    return load.run(router.url, lambda i: load.chat_body(), total, concurrency=4, hang_guard=DEADLINE + 20)


def test_one_hostile_agent_cannot_raise_another_agents_failures_or_latency(
        upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> None:
    victims = size(200, 2_000)
    # The primary flaps a little (a 2% backup-worthy fault rate): fine as long as its breaker is its own.
    upstream.queue("up-primary", *flapping(3 * victims, fault_rate=0.01, seed=6, hang_seconds=HANG))
    router = start_router(_config(upstream))
    baseline = _victim_load(router, victims)

    hostile: list[httpx.Response] = []
    done = threading.Event()

    def attack() -> None:
        with httpx.Client(base_url=router.url, timeout=DEADLINE + 20,
                          headers={"authorization": f"Bearer {HOSTILE_KEY}"}) as client:
            for i in range(size(8, 200)):
                if done.is_set():
                    return
                body = deeply_nested(200) if i % 2 == 0 else many_tools(10_000, salt=f"{i}_")
                hostile.append(client.post("/v1/chat/completions", json=body))

    attacker = threading.Thread(target=attack, name="hostile-agent", daemon=True)
    attacker.start()
    during = _victim_load(router, victims)
    done.set()
    attacker.join(120)
    assert not attacker.is_alive()

    print(f"\nbaseline: {baseline.summary()}\nduring: {during.summary()}\nhostile statuses: "
          f"{sorted({r.status_code for r in hostile})}")
    # The hostile bodies are the caller's own mistake: a 400 before any attempt, never a deployment's fault.
    assert hostile and {r.status_code for r in hostile} <= {400, 413}, [r.text[:200] for r in hostile[:4]]
    assert all(r.json()["error"]["type"] == "invalid_request_error" for r in hostile)
    assert not [r for r in upstream.served() if "deep" in r.tool_names or len(r.tool_names) >= 10_000], "forwarded"
    assert during.statuses()[0] == 0
    assert during.failure_rate() <= baseline.failure_rate() + 0.005, (baseline.summary(), during.summary())
    # Latency only as a generous ratio (the machine is shared): 10,000 tools once cost ~90 ms of loop time each.
    assert during.median_seconds() <= 4 * baseline.median_seconds() + 0.05, (
        baseline.median_seconds(), during.median_seconds())
