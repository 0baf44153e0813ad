"""Streams travel as batches (the events one network read completed). Pure: the SSE splitter is fed scripted
network reads; the keep-alive-only upstream and the endless event are in test_upstream_client.py."""

from __future__ import annotations

import time

import pytest

from providers.sse_splitter import EventTooLarge, NotAnEventStream, SSESplitter
from router import sse


def split(*reads: bytes, max_event_bytes: int = 1024 * 1024) -> list[list[bytes]]:
    splitter = SSESplitter(max_event_bytes)
    batches = [splitter.feed(read) for read in reads]
    return [batch for batch in [*batches, splitter.finish()] if batch]


def test_events_of_one_read_form_one_batch():
    assert split(b'data: {"a":1}\n\ndata: {"a":2}\n\n: comment\n\ndata: {"a"', b':3}\n\n') == \
        [[b'{"a":1}', b'{"a":2}'], [b'{"a":3}']]


def test_crlf_and_multiline_events_are_still_split_even_across_reads():
    assert split(b"data: one\r\n\r\ndata: two\r\ndata: lines\r", b"\n\r", b"\ndata: end\r\n\r\n") == \
        [[b"one"], [b"two\nlines", b"end"]]  # the second blank line was completed by the third read


def test_a_read_that_completes_no_event_yields_nothing_and_the_boundary_may_straddle_reads():
    assert split(b"data: {", b"}\n", b"\n") == [[b"{}"]]


def test_a_last_event_without_blank_line_still_counts():
    assert split(b"event: x\ndata: tail") == [[b"tail"]]


def test_an_event_over_the_bound_is_refused_whole_or_in_pieces():
    with pytest.raises(EventTooLarge):
        split(b"data: " + b"x" * 2000 + b"\n\n", max_event_bytes=1024)
    with pytest.raises(EventTooLarge):
        split(*[b"y" * 100] * 20, max_event_bytes=1024)


def test_a_big_event_in_small_reads_costs_linear_time():
    splitter = SSESplitter(64 * 1024 * 1024)
    started = time.thread_time()
    for _ in range(5000):  # 20 MiB in 4 KiB reads
        assert splitter.feed(b"z" * 4096) == []
    assert time.thread_time() - started < 1.0


@pytest.mark.parametrize("start", [b"<html>\n<body>oops</body>\n\n", b'{"id": "x"}\n\n', b"HTTP/1.1 200 OK\n\n"])
def test_what_is_not_sse_is_recognised_before_the_first_event(start):
    with pytest.raises(NotAnEventStream):
        split(start)


def test_unknown_lines_after_the_first_event_are_ignored_as_sse_says():
    assert split(b"data: 1\n\nweird line\n\ndata: 2\n\n") == [[b"1", b"2"]]


def test_events_are_framed_together_in_one_write():
    assert sse.events([b"{}"]) == sse.event(b"{}")
    assert sse.events([b'{"a":1}', b'{"a":2}']) == sse.event(b'{"a":1}') + sse.event(b'{"a":2}')
