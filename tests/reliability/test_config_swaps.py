"""Config swaps under load, the router in its own process: admin reloads, file changes and SIGHUP, some of them
invalid, while a bounded load runs; no request may fail (issue 11; item 9 for the write during a reload)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.configs import with_test_identity
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterProcess, wait_until, write_config
from tests.reliability import load
from tests.reliability.process import STARTUP
from tests.reliability.scale import size

pytestmark = pytest.mark.reliability

ADMIN_KEY = "admin-secret-for-swaps"


def _config(base_url: str, which: str) -> str:
    return with_test_identity(f"""
providers:
  fake-{which}: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: 5}}
deployments:
  dep-{which}: {{provider: fake-{which}, model: up-{which}}}
models:
  fast: [dep-{which}]
""")


def _invalid(base_url: str) -> str:
    return _config(base_url, "v0").replace("fast: [dep-v0]", "fast: [dep-v0]\n  broken: [no-such-deployment]")


def _router(upstream: FakeUpstream, tmp_path: Path) -> tuple[RouterProcess, Path]:
    path = write_config(_config(upstream.openai_base_url, "v0"), str(tmp_path))
    env = {"AGENT_ROUTER_ADMIN_KEY": ADMIN_KEY, "AGENT_ROUTER_WATCH_CONFIG": "true",
           "AGENT_ROUTER_WATCH_INTERVAL": "0.05"}
    return RouterProcess(path, env=env), path


def _served(router: RouterProcess) -> str:
    with router.client() as client:
        return client.chat.completions.create(model="fast", messages=load.USER).model


def test_config_swaps_under_load_fail_no_request(upstream: FakeUpstream, tmp_path: Path) -> None:
    router, path = _router(upstream, tmp_path)
    router.start(STARTUP)
    swaps = size(15, 100)
    refused = 0
    try:
        with load.BackgroundLoad(router.url, lambda i: load.chat_body(stream=i % 4 == 0), 1_000_000,
                                 concurrency=8, hang_guard=60) as running, httpx.Client(base_url=router.url) as http:
            for swap in range(swaps):
                invalid = swap % 3 == 2
                text = _invalid(upstream.openai_base_url) if invalid else _config(upstream.openai_base_url,
                                                                                   f"v{swap}")
                if swap % 4 == 3:  # an atomic rename, as editors and deploy tools do
                    os.replace(write_config(text, str(path.parent), name=".config.tmp"), path)
                else:
                    path.write_text(text)
                way = swap % 4  # 0 and 2: /admin/reload, 1: SIGHUP, 3: the file watcher alone
                if way in (0, 2):
                    answer = http.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
                    assert answer.status_code == (400 if invalid else 200), answer.text
                    refused += invalid
                elif way == 1 and router.proc is not None:
                    router.proc.send_signal(signal.SIGHUP)
                time.sleep(0.15)  # the watcher's (or the signal's) turn, and some load on this version
            report = running.stop()
    finally:
        code = router.stop()
    print(f"\n{swaps} swaps ({refused} refused by /admin/reload); {report.summary()}")
    assert code in (0, -signal.SIGTERM), router.output()
    assert len(report.outcomes) >= swaps and refused >= 1
    assert report.failures() == [], report.summary()
    assert len({r.body["model"] for r in upstream.served()}) >= swaps // 3


def test_a_write_that_lands_during_a_reload_is_loaded(upstream: FakeUpstream, tmp_path: Path) -> None:
    router, path = _router(upstream, tmp_path)
    router.start(STARTUP)
    try:
        for round_ in range(size(3, 20)):
            path.write_text(_config(upstream.openai_base_url, f"a{round_}"))
            time.sleep(0.06)  # the watcher sees this one and starts reloading ...
            path.write_text(_config(upstream.openai_base_url, f"b{round_}"))  # ... while this lands
            assert wait_until(lambda r=round_: _served(router) == f"up-b{r}", timeout=10), (
                f"round {round_}: the second write was never loaded")
    finally:
        router.stop()
