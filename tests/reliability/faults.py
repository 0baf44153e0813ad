"""Seeded fault schedules for a fake upstream and the hostile bodies one agent sends.

A schedule is a deterministic list of behaviours (same seed, same faults), queued on a fake upstream model, so a
trial injects a known number of each fault.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

from tests.fakes.behaviours import Behaviour, Error, Garbage, Hang, InvalidJSON, ResetMidStream, Text
from tests.fakes.upstream import FakeUpstream

HOSTILE_KEY = "hostile-key"
HOSTILE_HASH = "sha256:" + hashlib.sha256(HOSTILE_KEY.encode()).hexdigest()


def flapping(count: int, fault_rate: float, seed: int, hang_seconds: float) -> list[Behaviour]:
    """``count`` behaviours: mostly good answers, then and again a run of faults (the upstream "flaps")."""
    rng = random.Random(seed)
    faults: list[Behaviour] = [Error(500), Error(503), Error(429, headers={"retry-after": "1"}),
                               Hang(hang_seconds), ResetMidStream(after_chunks=0), Garbage(), InvalidJSON()]
    schedule: list[Behaviour] = []
    while len(schedule) < count:
        if rng.random() < fault_rate:
            schedule.extend(rng.choice(faults) for _ in range(rng.randint(1, 4)))  # a flap: a short run
        else:
            schedule.append(Text())
    return schedule[:count]


def injected(schedule: list[Behaviour]) -> Counter[str]:
    return Counter(type(b).__name__ + (f" {b.status}" if isinstance(b, Error) else "") for b in schedule
                   if not isinstance(b, Text))


def queue_schedule(upstream: FakeUpstream, model: str, schedule: list[Behaviour]) -> None:
    upstream.queue(model, *schedule)


def deeply_nested(depth: int) -> dict[str, Any]:
    """A chat body whose one tool's parameters nest ``depth`` levels deep (it parses; is it forwardable?)."""
    inner: Any = {"type": "string"}
    for _ in range(depth):
        inner = {"type": "object", "properties": {"x": inner}}
    return {"model": "fast", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "deep", "parameters": inner}}]}


def many_tools(count: int, salt: str = "") -> dict[str, Any]:
    """A chat body offering ``count`` distinct tools."""
    tools = [{"type": "function", "function": {"name": f"tool_{salt}{i}", "parameters": {"type": "object"}}}
             for i in range(count)]
    return {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
