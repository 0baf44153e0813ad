"""Streams travel as batches (the events one network read completed) and never hang on a busy but silent
upstream. Pure: the SSE splitter is fed scripted network reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from providers.openai_compatible import _sse_batches
from router import sse


class ScriptedReads:
    """Stands in for the HTTP client's pieces: each one is one network read, after an optional pause."""

    def __init__(self, *reads: bytes | tuple[float, bytes]) -> None:
        self.reads = reads

    async def iter_any(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            if isinstance(read, tuple):
                await asyncio.sleep(read[0])
                read = read[1]
            yield read


async def collect(content: ScriptedReads, stall_after: float = 5.0) -> list[list[bytes]]:
    return [batch async for batch in _sse_batches(content.iter_any(), stall_after)]


def test_events_of_one_read_form_one_batch():
    reads = ScriptedReads(b'data: {"a":1}\n\ndata: {"a":2}\n\n: comment\n\ndata: {"a"', b':3}\n\n')
    assert asyncio.run(collect(reads)) == [[b'{"a":1}', b'{"a":2}'], [b'{"a":3}']]


def test_crlf_and_multiline_events_are_still_split():
    reads = ScriptedReads(b"data: one\r\n\r\ndata: two\r\ndata: lines\r\n\r\n")
    assert asyncio.run(collect(reads)) == [[b"one", b"two\nlines"]]


def test_a_read_that_completes_no_event_yields_nothing():
    reads = ScriptedReads(b"data: {", b"}", b"\n\n")
    assert asyncio.run(collect(reads)) == [[b"{}"]]


def test_an_upstream_that_only_sends_keepalives_is_cut_off():
    reads = ScriptedReads(b"data: first\n\n", *[(0.1, b": ping\n\n")] * 30)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(collect(reads, stall_after=0.3))
    assert time.monotonic() - started < 1.5


def test_events_are_framed_together_in_one_write():
    assert sse.events([b"{}"]) == sse.event(b"{}")
    assert sse.events([b'{"a":1}', b'{"a":2}']) == sse.event(b'{"a":1}') + sse.event(b'{"a":2}')
