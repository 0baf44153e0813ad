"""A bounded concurrent load driver (httpx, asyncio) and what it saw, request by request.

Each request is one ``Outcome``; a trial asserts on counts and rates over them, never on milliseconds. The
client timeout is only a hang guard: a request still unanswered then is recorded as ``status 0`` ("hung").
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

USER = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Outcome:
    status: int
    """HTTP status; 0 when no answer came before the hang guard (or the connection failed)."""
    request_id: str | None
    agent: str
    seconds: float
    finished: float
    """``time.monotonic()`` when the answer was complete."""
    error: str | None = None
    """The error body's ``error.type`` / ``code``, a stream's error event, or the transport error."""
    deployment: str | None = None


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def statuses(self, agent: str | None = None) -> Counter[int]:
        return Counter(o.status for o in self.of(agent))

    def of(self, agent: str | None) -> list[Outcome]:
        return [o for o in self.outcomes if agent is None or o.agent == agent]

    def failures(self, agent: str | None = None) -> list[Outcome]:
        return [o for o in self.of(agent) if o.status != 200 or o.error is not None]

    def failure_rate(self, agent: str | None = None) -> float:
        chosen = self.of(agent)
        return len(self.failures(agent)) / max(1, len(chosen))

    def answered_ids(self) -> set[str]:
        """Request ids of every request that got a complete, successful answer."""
        return {o.request_id for o in self.outcomes if o.status == 200 and o.error is None and o.request_id}

    def median_seconds(self, agent: str | None = None) -> float:
        times = sorted(o.seconds for o in self.of(agent))
        return times[len(times) // 2] if times else 0.0

    def summary(self) -> str:
        failed = Counter((o.status, o.error) for o in self.failures())
        return f"{len(self.outcomes)} requests, statuses {dict(self.statuses())}, failures {dict(failed)}"


def chat_body(model: str = "fast", *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, "stream": stream, **extra}


async def _one(client: httpx.AsyncClient, body: dict[str, Any], key: str, agent: str) -> Outcome:
    started = time.monotonic()
    headers = {"authorization": f"Bearer {key}"}
    content = orjson.dumps(body)
    try:
        async with client.stream("POST", "/v1/chat/completions", content=content, headers=headers) as response:
            data = await response.aread()
    except httpx.HTTPError as exc:
        return Outcome(0, None, agent, time.monotonic() - started, time.monotonic(), type(exc).__name__)
    error = _error_of(response.status_code, data, bool(body.get("stream")))
    return Outcome(response.status_code, response.headers.get("x-request-id"), agent, time.monotonic() - started,
                   time.monotonic(), error, response.headers.get("x-agent-router-deployment"))


def _error_of(status: int, data: bytes, stream: bool) -> str | None:
    if status != 200:
        try:
            err = orjson.loads(data)["error"]
            return str(err.get("code") or err.get("type"))
        except Exception:
            return "not-openai-error:" + data[:80].decode(errors="replace")
    if stream:
        if b'"error"' in data and b"data: {\"error\"" in data:
            return "stream-error"
        if not data.rstrip().endswith(b"data: [DONE]"):
            return "stream-unfinished"
    return None


async def drive(url: str, bodies: Callable[[int], dict[str, Any]], total: int, *, concurrency: int = 16,
                key: str = "test-key", agent: str = "test-agent", hang_guard: float = 60.0,
                stop: threading.Event | None = None, report: LoadReport | None = None) -> LoadReport:
    """Send ``total`` requests (``bodies(i)``), ``concurrency`` at a time; stop early when ``stop`` is set."""
    report = report if report is not None else LoadReport()
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=hang_guard, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                if stop is not None and stop.is_set():
                    return
                report.outcomes.append(await _one(client, bodies(i), key, agent))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return report


def run(url: str, bodies: Callable[[int], dict[str, Any]], total: int, **kwargs: Any) -> LoadReport:
    """:func:`drive` from synchronous test code."""
    return asyncio.run(drive(url, bodies, total, **kwargs))


class BackgroundLoad:
    """:func:`drive` in a thread of its own, so the test can inject faults meanwhile; ``stop()`` ends it."""

    def __init__(self, url: str, bodies: Callable[[int], dict[str, Any]], total: int, **kwargs: Any) -> None:
        self.report = LoadReport()
        self.halt = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(drive(url, bodies, total, stop=self.halt, report=self.report, **kwargs)),
            name="load", daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answered(self) -> int:
        return len(self.report.outcomes)

    def stop(self, timeout: float = 120) -> LoadReport:
        self.halt.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load driver did not stop"
        return self.report

    def wait(self, timeout: float = 600) -> LoadReport:
        """Let the load finish on its own (bounded by ``total``), then return what it saw."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load driver did not finish"
        return self.report
