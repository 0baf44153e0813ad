"""A memory soak: a bounded number of requests whose tool names and models never repeat, the router in its own
process, its RSS measured before and after (issue 11, item 6: caches keyed by client-chosen names are bounded;
never-repeating tool names once pushed memory from 66 MB to 105-190 MB)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.configs import openai_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterProcess, write_config
from tests.reliability import load
from tests.reliability.process import STARTUP, rss_mb
from tests.reliability.scale import FULL, size

pytestmark = pytest.mark.reliability

TOOLS_PER_REQUEST = 8
WARM_UP = size(200, 2_000)
GROWTH_MB = 25 if FULL else 12
"""Allowed RSS growth after the warm-up: allocator slack and the ledger's buffers, not a cache per name."""


def _never_repeating(offset: int) -> Any:
    def body(i: int) -> dict[str, Any]:
        n = offset + i
        tools = [{"type": "function", "function": {"name": f"t{n}_{j}", "parameters": {"type": "object"}}}
                 for j in range(TOOLS_PER_REQUEST)]
        model = "fast" if n % 4 else f"no-such-model-{n}"  # an unknown model is a 404, named by the client
        return load.chat_body(model, stream=n % 5 == 0, tools=tools)
    return body


def test_never_repeating_names_do_not_grow_memory(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = write_config(openai_config(upstream.openai_base_url), str(tmp_path))
    router = RouterProcess(config, env={"AGENT_ROUTER_WATCH_CONFIG": "false"}).start(STARTUP)
    total = size(800, 20_000)
    try:
        warm = load.run(router.url, _never_repeating(0), WARM_UP, concurrency=8)
        before = rss_mb(router)
        soak = load.run(router.url, _never_repeating(WARM_UP), total, concurrency=8)
        after = rss_mb(router)
    finally:
        code = router.stop()
    print(f"\nsoak: {total} requests ({TOOLS_PER_REQUEST * total} never-repeating tool names), RSS {before:.1f} -> "
          f"{after:.1f} MB; {soak.summary()}")
    assert code in (0, -signal.SIGTERM)
    assert set(warm.statuses()) | set(soak.statuses()) <= {200, 404}, soak.summary()
    assert after - before <= GROWTH_MB, f"RSS grew {after - before:.1f} MB over {total} requests"
