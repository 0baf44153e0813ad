"""Memory stays bounded when clients choose names that never repeat (tool names, keys, models, headers).

Every memo in ``router`` and ``providers`` has a size bound, and a router fed thousands of never-repeating tool
names, argument keys and model names keeps a flat heap once its memos are full.
"""

from __future__ import annotations

import functools
import gc
import importlib
import pkgutil
import tracemalloc
import uuid

import orjson

import providers
import router
from router.policy import decide, names
from tests.configs import openai_config
from tests.harness import wait_until

TOOLS_PER_REQUEST = 128
MEMO_SIZE = 4096
"""The largest memo keyed by tool names (the policy's per-role verdicts, the canonical names)."""


def _all_modules() -> list[object]:
    found = []
    for package in (router, providers):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith(".__main__"):  # running it is the command line
                found.append(importlib.import_module(info.name))
    return found


def test_every_memo_in_the_router_has_a_size_bound():
    unbounded = []
    for module in _all_modules():
        for name, value in vars(module).items():
            wrapped = getattr(value, "fget", value)  # a cached property's getter is checked too
            if isinstance(wrapped, functools._lru_cache_wrapper) and wrapped.cache_parameters()["maxsize"] is None:
                unbounded.append(f"{module.__name__}.{name}")
    assert unbounded == []


def _round(http, start: int) -> None:
    tag = uuid.uuid4().hex[:8]
    tools = [{"type": "function", "function": {"name": f"t_{tag}_{start + i}", "parameters": {"type": "object"}}}
             for i in range(TOOLS_PER_REQUEST)]
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function",
                    "function": {"name": f"h_{tag}", "arguments": orjson.dumps({f"k_{tag}": 1}).decode()}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    body = {"model": "fast", "messages": history, "tools": tools, f"x_{tag}": 1}
    resp = http.post("/v1/chat/completions", content=orjson.dumps(body),
                     headers={"authorization": "Bearer test-key", "x-agent-router-sticky": tag})
    assert resp.status_code == 200, resp.text
    missing = http.post("/v1/chat/completions", content=orjson.dumps({**body, "model": f"m-{tag}", "tools": []}),
                        headers={"authorization": "Bearer test-key"})
    assert missing.status_code in (400, 403, 404), missing.text


def _heap_after(server, http, upstream, rounds: int, start: int) -> int:
    for n in range(rounds):
        _round(http, start + n * TOOLS_PER_REQUEST)
        if n % 20 == 0:
            upstream.received.clear()
    upstream.received.clear()
    assert wait_until(lambda: server.state.ledger.writer.pending == 0, 30), "the ledger did not drain"
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_never_repeating_tool_names_leave_the_heap_flat(upstream, start_router):
    server = start_router(openai_config(upstream.openai_base_url), ledger_flush_interval=0.05)
    rounds = 2 * MEMO_SIZE // TOOLS_PER_REQUEST  # each phase offers twice as many names as a memo holds
    tracemalloc.start()
    try:
        with server.http() as http:
            full = _heap_after(server, http, upstream, rounds, 0)  # every memo is full now
            later = _heap_after(server, http, upstream, rounds, rounds * TOOLS_PER_REQUEST)
    finally:
        tracemalloc.stop()
    # 8,192 new names and keys more: the heap grows by far less than what they would hold if kept (about 4 MB).
    assert later - full < 2 * 1024 * 1024, f"heap grew by {(later - full) / 1e6:.1f} MB"
    assert names._canonical.cache_info().currsize <= names._canonical.cache_info().maxsize
    for policy in server.state.snapshot.extras.get("tool_policies", {}).values():
        assert len(policy.by_name) <= decide.NAME_CACHE_SIZE
