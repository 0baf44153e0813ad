"""SIGTERM and SIGKILL mid-load, the router in its own process (issue 11, item 3).

After SIGTERM every request that got an answer has its record; after SIGKILL only the requests answered in the
last flush interval (the documented window) may be missing.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.configs import openai_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterProcess, wait_until, write_config
from tests.reliability import load
from tests.reliability.process import STARTUP, recorded_request_ids, signal_and_wait
from tests.reliability.scale import size

pytestmark = pytest.mark.reliability

FLUSH_INTERVAL = 0.5
WINDOW_MARGIN = 1.5
"""Slack on a loaded 2-core machine for the batch being written when the kill lands (a hang guard, not a bound
on speed)."""


def _router(upstream: FakeUpstream, tmp_path: Path) -> RouterProcess:
    config = write_config(openai_config(upstream.openai_base_url), str(tmp_path))
    env = {"AGENT_ROUTER_WATCH_CONFIG": "false", "AGENT_ROUTER_LEDGER_FLUSH_INTERVAL": str(FLUSH_INTERVAL)}
    return RouterProcess(config, env=env)


def _mixed(i: int) -> dict[str, object]:
    return load.chat_body(stream=i % 3 == 0)


def _load_then(router: RouterProcess, sig: signal.Signals) -> tuple[load.LoadReport, int | None, float, float]:
    before = size(150, 3_000)
    with load.BackgroundLoad(router.url, _mixed, 10 * before, concurrency=16, hang_guard=60) as running:
        assert wait_until(lambda: running.answered() >= before, timeout=300), "the load never got going"
        signalled = time.monotonic()
        code, seconds = signal_and_wait(router, sig)
        report = running.stop()
    return report, code, seconds, signalled


def test_sigterm_mid_load_keeps_every_answered_request_record(upstream: FakeUpstream, tmp_path: Path) -> None:
    router = _router(upstream, tmp_path).start(STARTUP)
    try:
        report, code, seconds, _ = _load_then(router, signal.SIGTERM)
    finally:
        router.stop()
    answered = report.answered_ids()
    recorded = recorded_request_ids(router.env["AGENT_ROUTER_DATABASE_URL"])
    print(f"\nSIGTERM: {len(answered)} answered, shutdown took {seconds:.2f}s, "
          f"{len(answered - recorded)} records missing; {report.summary()}")
    assert code in (0, -signal.SIGTERM), router.output()
    assert answered and answered <= recorded, f"{len(answered - recorded)} answered requests have no record"
    assert "Traceback" not in router.output()


def test_sigkill_mid_load_loses_at_most_the_last_flush_interval(upstream: FakeUpstream, tmp_path: Path) -> None:
    router = _router(upstream, tmp_path).start(STARTUP)
    try:
        report, code, _, killed_at = _load_then(router, signal.SIGKILL)
    finally:
        router.stop()
    answered = {o.request_id: o for o in report.outcomes if o.status == 200 and o.error is None and o.request_id}
    recorded = recorded_request_ids(router.env["AGENT_ROUTER_DATABASE_URL"])
    lost = [answered[i] for i in answered.keys() - recorded]
    oldest = max((killed_at - o.finished for o in lost), default=0.0)
    print(f"\nSIGKILL: {len(answered)} answered, {len(lost)} records lost, the oldest answered {oldest:.2f}s "
          f"before the kill")
    assert code == -signal.SIGKILL
    assert oldest <= FLUSH_INTERVAL + WINDOW_MARGIN, f"{len(lost)} lost, one answered {oldest:.2f}s before the kill"
