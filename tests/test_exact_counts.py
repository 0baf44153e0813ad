"""A tokenizer costs 40-70 MB and most of a second to load: the router loads one only for a request that may
really need an exact count, and then in a worker thread before the (synchronous) rules run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from router.exact_counts import count_demand, ensure_exact_counts
from router.rules import plan_route
from router.rules.explain import request_context
from router.tokens import encoding_for, encoding_loaded
from tests.test_rules_unit import load, strategy

ROOT = Path(__file__).resolve().parent.parent
SHORT = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
WORDY = {"model": "fast", "messages": [{"role": "user", "content": "word " * 400}]}  # 2,000 bytes: 400-2,000 tokens
RANGES = """rules:
  - {name: huge, when: {all: [{model: fast}, {not: {prompt_tokens: {max: 99999}}}]}, route: {deployments: [c]}}
  - {name: tiny, when: {prompt_tokens: {max: 1000}}, route: {deployments: [a]}}
"""
NO_WINDOWS = """
providers:
  p: {type: mock}
deployments:
  a: {provider: p, model: up-a}
models:
  fast: [a]
rules: rules
"""


def test_demand_lists_every_range_and_the_smallest_window(tmp_path: Path) -> None:
    demand = count_demand(load(tmp_path, {"r.yaml": RANGES}))
    assert [(t.min, t.max) for t in demand.ranges] == [(None, 99999), (None, 1000)]
    assert demand.smallest_window == 8000 and not demand.never
    assert count_demand(load(tmp_path, {"r.yaml": "rules: []\n"}, NO_WINDOWS)).never


def test_bounds_decide_whether_a_count_may_be_needed(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": RANGES})
    demand = count_demand(snapshot)
    assert not demand.may_count(request_context(snapshot, SHORT))
    assert demand.may_count(request_context(snapshot, WORDY))  # 'tiny' cannot tell 2,000 bytes from 1,000 tokens
    counted = request_context(snapshot, WORDY)
    counted.prompt_estimate = 500
    assert not demand.may_count(counted)
    windows_only = strategy(tmp_path, "cheapest")  # no ranges; deployment a's window is 8,000
    big = {"model": "fast", "messages": [{"role": "user", "content": "x" * 9000}]}
    assert count_demand(windows_only).ranges == ()
    assert count_demand(windows_only).may_count(request_context(windows_only, big))
    assert not count_demand(windows_only).may_count(request_context(windows_only, WORDY))


def test_cheapest_counts_only_when_a_window_is_in_doubt(tmp_path: Path) -> None:
    snapshot = strategy(tmp_path, "cheapest")
    ctx = request_context(snapshot, SHORT)
    assert plan_route(ctx).deployments == ("a", "b", "c")
    assert ctx.prompt_estimate is None
    ctx = request_context(snapshot, {"model": "fast", "messages": [{"role": "user", "content": "x " * 6000}]})
    assert plan_route(ctx).deployments == ("a", "b", "c")  # 12,000 bytes may be over a's 8,000: counted
    assert isinstance(ctx.prompt_estimate, int) and ctx.prompt_estimate <= 8000


def test_the_pre_step_loads_the_encoding_the_count_will_use(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": RANGES})
    ctx = request_context(snapshot, WORDY)
    asyncio.run(ensure_exact_counts(ctx))
    assert encoding_loaded(encoding_for(ctx))
    assert plan_route(ctx).rule == "tiny"


_FRESH_PROCESS = """
import asyncio, sys
from pathlib import Path
from router.config import load_snapshot
from router.exact_counts import ensure_exact_counts
from router.rules import plan_route
from router.rules.explain import request_context
from router.tokens import encoding_for, encoding_loaded

snapshot = load_snapshot(sys.argv[1])
short = request_context(snapshot, {short})
asyncio.run(ensure_exact_counts(short))
assert plan_route(short).rule == "tiny"
assert "tiktoken" not in sys.modules, "loaded for a request the bounds decide"
wordy = request_context(snapshot, {wordy})
assert not encoding_loaded(encoding_for(wordy))
asyncio.run(ensure_exact_counts(wordy))
assert encoding_loaded(encoding_for(wordy)), "not loaded before the rules needed it"
assert plan_route(wordy).rule == "tiny"
print("ok")
"""


def test_a_fresh_router_loads_no_encoding_until_a_request_needs_one(tmp_path: Path) -> None:
    """In a fresh interpreter: neither loading a config with token rules nor a request the bounds decide loads
    tiktoken; a request they cannot decide gets its encoding from the pre-step, before the rules run."""
    load(tmp_path, {"r.yaml": RANGES})
    script = textwrap.dedent(_FRESH_PROCESS).replace("{short}", repr(SHORT)).replace("{wordy}", repr(WORDY))
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "config.yaml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
